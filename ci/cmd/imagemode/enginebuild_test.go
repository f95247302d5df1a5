package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagemode/imagemode/ci/buildstep"
	"github.com/imagemode/imagemode/ci/internal/regtest"
)

// TestStepServeDrivesAWholeRun: build-all --builder engine --step-serve serves a run's steps over HTTP the way the
// module uses it — post nothing, build what the step names (here: push an image with its labels), post the results
// back — until the report; a bad step file is a 422 with the CLI's message, and the process serves on.
func TestStepServeDrivesAWholeRun(t *testing.T) {
	host := regtest.Start(t, nil)
	base := host + "/upstream/base:1"
	if _, err := regtest.Push(t.Context(), base, 256, 1, nil); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var code int
	var stderr bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		code = run(ctx, []string{"build-all", "--builder", "engine", "--step-serve", addr, "--registry", host + "/im",
			"--dir", "../../../tests/standin/containerfiles", "--profile", "standin", "--base-image", base,
			"--commit", strings.Repeat("c", 40), "--run-id", "serve1"}, io.Discard, &stderr)
	}()
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("the step server did not answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	post := func(body []byte) (int, []byte) {
		t.Helper()
		resp, err := http.Post(url+"/step", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, data
	}
	if status, msg := post([]byte(`{"version":1}`)); status != http.StatusUnprocessableEntity || !strings.Contains(string(msg), "imagemode build-all: the step file") {
		t.Errorf("a bad step file: %d %s", status, msg)
	}
	var body []byte
	steps := 0
	var final *buildstep.File
	for steps < 10 {
		status, data := post(body)
		if status != http.StatusOK {
			t.Fatalf("step %d: %d %s", steps, status, data)
		}
		f, err := buildstep.Parse(data)
		if err != nil {
			t.Fatalf("step %d: %v\n%s", steps, err, data)
		}
		if f.Over() {
			final = f
			break
		}
		steps++
		for _, b := range f.Builds { // the engine's part: build and publish
			d, err := regtest.Push(t.Context(), b.Target, 256, 1, b.Labels)
			if err != nil {
				t.Fatal(err)
			}
			f.Results = append(f.Results, buildstep.Result{Layer: b.Layer, Digest: d})
		}
		if body, err = json.Marshal(f); err != nil {
			t.Fatal(err)
		}
	}
	if status, msg := post2(t, url+"/quit"); status != http.StatusOK || !strings.Contains(msg, "bye") {
		t.Errorf("/quit: %d %s", status, msg)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the server did not end after /quit")
	}
	cancel()
	wg.Wait()
	if final == nil || final.Error != "" || final.Report == nil {
		t.Fatalf("the run did not end with a report: %+v\n%s", final, stderr.String())
	}
	if steps != 3 || len(final.Report.Layers) != 4 || !final.Report.Candidates {
		t.Errorf("%d build steps, %d layers, candidates %v", steps, len(final.Report.Layers), final.Report.Candidates)
	}
	if final.Report.RunID != "serve1" {
		t.Errorf("run id %q", final.Report.RunID)
	}
	if code != 0 {
		t.Errorf("the server exited %d after it was stopped\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("serving the steps of run serve1 on %s", addr)) {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

func post2(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestStepServeAnswersAConfigurationErrorOnItsFirstStep: the step server opens its port before it reads its
// configuration, so flags that cannot make one are the answer to the first step — the CLI's own message, which the
// module passes on — and the process ends with that error (exit 2) once it is out.
func TestStepServeAnswersAConfigurationErrorOnItsFirstStep(t *testing.T) {
	addr := freeAddr(t)
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"build-all", "--builder", "engine", "--step-serve", addr, "--registry", "registry.example/im",
			"--dir", "../../../tests/standin/containerfiles", "--profile", "standin", "--base-image", "registry.example/base:1",
			"--commit", strings.Repeat("c", 40), "--build-arg", "NOVALUE"}, io.Discard, &stderr)
	}()
	url := "http://" + addr + "/step"
	deadline := time.Now().Add(10 * time.Second)
	var resp *http.Response
	var err error
	for {
		if resp, err = http.Post(url, "application/json", nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step server did not answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	msg, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(msg), `imagemode build-all: --build-arg "NOVALUE": want KEY=VALUE`) {
		t.Errorf("first step: %d %s", resp.StatusCode, msg)
	}
	select {
	case code := <-done:
		if code != 2 {
			t.Errorf("exit %d, want 2 (a usage error)\n%s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not end after answering the error")
	}
	if strings.Contains(stderr.String(), "serving the steps") {
		t.Errorf("a server without a configuration said it serves a run:\n%s", stderr.String())
	}
}

// freeAddr is a 127.0.0.1 address nothing listens on (it was free a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
