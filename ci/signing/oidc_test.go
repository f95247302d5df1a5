package signing

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGitHubIDToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer req-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("audience") != "sigstore" || r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "bad query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		w.Write([]byte(`{"count":1,"value":"eyJ.id.token"}`))
	}))
	defer srv.Close()
	tok, err := GitHubIDToken(t.Context(), srv.URL+"/token?api-version=2.0", "req-token")
	if err != nil || tok != "eyJ.id.token" {
		t.Fatalf("token = %q, %v", tok, err)
	}
	if _, err := GitHubIDToken(t.Context(), srv.URL+"/token?api-version=2.0", "wrong"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("wrong request token: %v", err)
	}
	if _, err := GitHubIDToken(t.Context(), "", ""); err == nil || !strings.Contains(err.Error(), "id-token: write") {
		t.Errorf("missing env: %v", err)
	}
	if strings.Contains(func() string { _, err := GitHubIDToken(t.Context(), srv.URL, "req-token-secret"); return err.Error() }(), "req-token-secret") {
		t.Error("the request token appears in an error")
	}
}
