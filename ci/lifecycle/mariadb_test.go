package lifecycle

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDB is a database/sql driver standing in for a MariaDB that refuses the first connections (still starting,
// its user not created yet: "Error 1130") and then stores rows.
type fakeDB struct {
	mu       sync.Mutex
	refuse   int
	attempts int
	rows     map[string]bool
}

var (
	fakeMu  sync.Mutex
	fakeDBs = map[string]*fakeDB{}
)

func init() { sql.Register("imagemode-fake-mariadb", fakeDriver{}) }

type fakeDriver struct{}

func (fakeDriver) Open(name string) (driver.Conn, error) {
	fakeMu.Lock()
	db := fakeDBs[name]
	fakeMu.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	db.attempts++
	if db.attempts <= db.refuse {
		return nil, errors.New("Error 1130: Host '10.0.2.2' is not allowed to connect to this MariaDB server")
	}
	return fakeConn{db}, nil
}

type fakeConn struct{ db *fakeDB }

func (c fakeConn) Prepare(q string) (driver.Stmt, error) { return fakeStmt{c.db, q}, nil }
func (fakeConn) Close() error                            { return nil }
func (fakeConn) Begin() (driver.Tx, error)               { return nil, errors.New("no transactions") }

type fakeStmt struct {
	db *fakeDB
	q  string
}

func (fakeStmt) Close() error  { return nil }
func (fakeStmt) NumInput() int { return -1 }
func (s fakeStmt) Exec(args []driver.Value) (driver.Result, error) {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	if strings.HasPrefix(s.q, "INSERT") {
		s.db.rows[args[0].(string)] = true
	}
	return driver.RowsAffected(1), nil
}
func (s fakeStmt) Query(args []driver.Value) (driver.Rows, error) {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	n := int64(0)
	if s.db.rows[args[0].(string)] {
		n = 1
	}
	return &fakeRows{n: n}, nil
}

type fakeRows struct {
	n    int64
	done bool
}

func (*fakeRows) Columns() []string { return []string{"n"} }
func (*fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = r.n
	return nil
}

type addrMachine struct{ addr string }

func (m addrMachine) Addr(int) string { return m.addr }
func (addrMachine) Serial() string    { return "" }

func newFakeRows(t *testing.T, refuse int) (*MariaDBRows, *Session, *fakeDB) {
	t.Helper()
	name := t.Name()
	db := &fakeDB{refuse: refuse, rows: map[string]bool{}}
	fakeMu.Lock()
	fakeDBs[name] = db
	fakeMu.Unlock()
	m := &MariaDBRows{Interval: 10 * time.Millisecond, open: func(string) (*sql.DB, error) { return sql.Open("imagemode-fake-mariadb", name) }}
	return m, &Session{cfg: Config{Machine: addrMachine{"127.0.0.1:3306"}}}, db
}

// TestMariaDBRowsRetry: writing the row waits for a MariaDB that refuses connections at first (the CI failure:
// "Error 1130 ... not allowed to connect" right after boot) instead of failing the step.
func TestMariaDBRowsRetry(t *testing.T) {
	m, s, db := newFakeRows(t, 5)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Write(ctx, s); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if db.attempts <= 5 {
		t.Errorf("%d attempts", db.attempts)
	}
	db.mu.Lock()
	db.refuse = db.attempts + 3 // refuse three more connections
	db.mu.Unlock()
	if err := m.Check(ctx, s); err != nil {
		t.Errorf("Check: %v", err)
	}
	// A row that is gone fails at once, not after the deadline.
	db.mu.Lock()
	db.rows = map[string]bool{}
	db.mu.Unlock()
	start := time.Now()
	if err := m.Check(ctx, s); !errors.Is(err, errRowGone) || time.Since(start) > 2*time.Second {
		t.Errorf("Check of a lost row: %v after %s", err, time.Since(start))
	}
}

// TestMariaDBRowsDeadline: a MariaDB that never answers fails with its last error when the step's deadline ends.
func TestMariaDBRowsDeadline(t *testing.T) {
	m, s, _ := newFakeRows(t, 1<<30)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := m.Write(ctx, s)
	if err == nil || !strings.Contains(err.Error(), "Error 1130") || !strings.Contains(err.Error(), "attempts") {
		t.Errorf("Write: %v", err)
	}
}
