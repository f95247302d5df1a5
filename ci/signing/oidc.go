package signing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// GitHubIDToken mints a GitHub Actions OIDC identity token for Sigstore (audience "sigstore") from the job's
// ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN (the job needs permissions: id-token: write).
// Tokens expire after minutes: mint one right before signing.
func GitHubIDToken(ctx context.Context, requestURL, requestToken string) (string, error) {
	if requestURL == "" || requestToken == "" {
		return "", fmt.Errorf("no GitHub OIDC request URL or token: the job needs `permissions: id-token: write`")
	}
	u, err := url.Parse(requestURL)
	if err != nil {
		return "", fmt.Errorf("parsing the OIDC request URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", "sigstore")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("making the OIDC token request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+requestToken)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("requesting an OIDC token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading the OIDC token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("requesting an OIDC token: HTTP %d", resp.StatusCode)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Value == "" {
		return "", fmt.Errorf("the OIDC token answer has no value")
	}
	return out.Value, nil
}
