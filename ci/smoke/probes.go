package smoke

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Target is what probes reach: addresses forwarded to the guest's ports, and its serial console.
type Target interface {
	// Addr returns the host:port forwarded to guest port p.
	Addr(p int) string
	// Serial returns the serial console so far.
	Serial() string
}

// consoleStater is a Target that can say how reading its console went (a QEMU in an engine service).
type consoleStater interface {
	ConsoleState() string
}

// Probe is one check of a booted guest. Check is called repeatedly until it succeeds or the deadline passes.
type Probe interface {
	Name() string
	// GuestPorts are the guest ports the probe needs forwarded.
	GuestPorts() []int
	Check(ctx context.Context, t Target) (detail string, err error)
}

// multiUserRE matches systemd's console line for the multi-user target, in every StatusUnitFormat.
var multiUserRE = regexp.MustCompile(`Reached target .*(Multi-User System|multi-user\.target)`)

// ansiRE matches the colour escapes systemd writes to the console.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// MultiUser passes once the guest's serial console shows systemd reaching multi-user.target. With SSH set (disk
// mode), it also passes when `systemctl is-active multi-user.target` says so: a disk image boots with its own
// kernel arguments, and when its serial getty starts before boot finishes (Type=idle gives up after 5 s on slow
// guests), systemd stops writing status lines to the console.
type MultiUser struct {
	SSH *SSH
}

// Name implements Probe.
func (MultiUser) Name() string { return "multi-user" }

// GuestPorts implements Probe.
func (MultiUser) GuestPorts() []int { return nil }

// Check implements Probe.
func (m MultiUser) Check(ctx context.Context, t Target) (string, error) {
	serial := t.Serial()
	if line := multiUserRE.FindString(ansiRE.ReplaceAllString(serial, "")); line != "" {
		return strings.TrimSpace(line), nil
	}
	if m.SSH == nil {
		if c, ok := t.(consoleStater); ok && serial == "" {
			return "", fmt.Errorf("the serial console stayed empty (%s)", c.ConsoleState())
		}
		return "", errors.New("the serial console does not show multi-user.target reached")
	}
	out, err := m.SSH.run(ctx, t, "systemctl is-active multi-user.target || true")
	if err != nil {
		return "", fmt.Errorf("the serial console does not show multi-user.target reached, and over SSH: %w", err)
	}
	if state := strings.TrimSpace(out); state != "active" {
		return "", fmt.Errorf("multi-user.target is %q (systemctl is-active over SSH)", state)
	}
	return "multi-user.target active (systemctl is-active over SSH)", nil
}

// httpAttemptTimeout bounds one HTTP attempt.
const httpAttemptTimeout = 2 * time.Second

// ErrWrongAnswer marks a probe whose service answered, but not as expected (a wrong status or page): unlike a
// service that does not answer yet, it is judged once it persists (RunOptions.WrongAnswerGrace).
var ErrWrongAnswer = errors.New("a wrong answer")

// HTTP GETs a path on guest port 80 and expects a status and a substring of the body. A port that accepts
// connections proves nothing (QEMU's forward accepts them before the guest listens): only an HTTP answer counts.
type HTTP struct {
	Path   string
	Status int
	Expect string
	Port   int
}

// Name implements Probe.
func (h HTTP) Name() string { return "http " + h.path() }

func (h HTTP) path() string {
	if h.Path == "" {
		return "/"
	}
	return h.Path
}

func (h HTTP) port() int {
	if h.Port == 0 {
		return 80
	}
	return h.Port
}

// GuestPorts implements Probe.
func (h HTTP) GuestPorts() []int { return []int{h.port()} }

// Check implements Probe.
func (h HTTP) Check(ctx context.Context, t Target) (string, error) {
	url := "http://" + t.Addr(h.port()) + h.path()
	// A forwarded connection to a guest whose network is not up yet stalls instead of failing: give up on an attempt
	// after 2 s (the next one starts 200 ms later) so that readiness is seen as soon as the guest answers.
	ctx, cancel := context.WithTimeout(ctx, httpAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", h.path(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: reading the body: %w", h.path(), err)
	}
	want := h.Status
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return "", fmt.Errorf("GET %s: status %d, want %d: %w", h.path(), resp.StatusCode, want, ErrWrongAnswer)
	}
	if h.Expect != "" && !strings.Contains(string(body), h.Expect) {
		return "", fmt.Errorf("GET %s: %d but the page lacks %q (got %q): %w", h.path(), resp.StatusCode, h.Expect, snippet(body), ErrWrongAnswer)
	}
	return fmt.Sprintf("GET %s: %d, %d bytes, contains %q", h.path(), resp.StatusCode, len(body), h.Expect), nil
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func init() {
	// The driver logs every refused attempt while the guest boots; the probe reports the last error itself.
	if err := mysql.SetLogger(mysql.Logger(log.New(io.Discard, "", 0))); err != nil {
		panic(err)
	}
}

// CredentialName is the systemd credential the database image's opt-in unit reads ("USER:PASSWORD").
const CredentialName = "imagemode.mariadb-user"

// MariaDB connects to guest port 3306, authenticates, runs SELECT VERSION() and a write/read round trip in the
// scratch schema imagemode_smoke. The user comes from the credential the VM is started with.
type MariaDB struct {
	User, Password string
}

// NewMariaDB makes a probe with a random user and password (letters and digits, what the guest unit accepts).
func NewMariaDB() (MariaDB, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return MariaDB{}, fmt.Errorf("making a password: %w", err)
	}
	return MariaDB{User: "smoke", Password: hex.EncodeToString(b)}, nil
}

// Credential is the value the VM must receive as CredentialName.
func (m MariaDB) Credential() string { return m.User + ":" + m.Password }

// Name implements Probe.
func (MariaDB) Name() string { return "mariadb" }

// GuestPorts implements Probe.
func (MariaDB) GuestPorts() []int { return []int{3306} }

// Check implements Probe.
func (m MariaDB) Check(ctx context.Context, t Target) (string, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = m.User, m.Password
	cfg.Net, cfg.Addr = "tcp", t.Addr(3306)
	cfg.DBName = "imagemode_smoke"
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 10*time.Second, 10*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return "", fmt.Errorf("mariadb: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return "", fmt.Errorf("mariadb: connect, authenticate, SELECT VERSION(): %w", err)
	}
	token := strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS smoke (id INT PRIMARY KEY, v VARCHAR(64))"); err != nil {
		return "", fmt.Errorf("mariadb: CREATE TABLE: %w", err)
	}
	if _, err := db.ExecContext(ctx, "REPLACE INTO smoke (id, v) VALUES (1, ?)", token); err != nil {
		return "", fmt.Errorf("mariadb: write: %w", err)
	}
	var got string
	if err := db.QueryRowContext(ctx, "SELECT v FROM smoke WHERE id = 1").Scan(&got); err != nil {
		return "", fmt.Errorf("mariadb: read back: %w", err)
	}
	if got != token {
		return "", fmt.Errorf("mariadb: wrote %q, read %q", token, got)
	}
	return "MariaDB " + version + ": write/read round trip in imagemode_smoke", nil
}
