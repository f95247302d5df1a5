package lifecycle

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/imagemode/imagemode/ci/smoke"
)

// MariaDBRows writes a row before the transitions and reads it back after each one: a database host's data
// survives switches and profile upgrades (MariaDB's major version may change, and the image's upgrade step runs).
// Like every probe of a booting guest it retries until the step's deadline: right after boot MariaDB may still be
// starting, or its credential unit may not have created the user yet (Error 1130/1045).
type MariaDBRows struct {
	// Probe carries the credentials the VM was started with.
	Probe smoke.MariaDB
	// Interval is the pause between attempts (default 500 ms).
	Interval time.Duration
	token    string
	// open connects to the guest (default: the MySQL driver); tests replace it.
	open func(addr string) (*sql.DB, error)
}

// errRowGone is a definite answer: the database is up and the row is not there.
var errRowGone = errors.New("the row written before the transition is gone")

// Name implements Persistence.
func (m *MariaDBRows) Name() string { return "MariaDB rows" }

func (m *MariaDBRows) db(s *Session) (*sql.DB, error) {
	addr := s.cfg.Machine.Addr(3306)
	if m.open != nil {
		return m.open(addr)
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = m.Probe.User, m.Probe.Password
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", addr, "imagemode_smoke"
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 10*time.Second, 10*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	return sql.OpenDB(conn), nil
}

// retry runs f until it succeeds, returns errRowGone, or ctx ends; the error then is f's last one.
func (m *MariaDBRows) retry(ctx context.Context, s *Session, f func(ctx context.Context, db *sql.DB) error) error {
	interval := m.Interval
	if interval == 0 {
		interval = 500 * time.Millisecond
	}
	var last error // the last answer that was not the deadline itself
	for attempt := 1; ; attempt++ {
		err := func() error {
			db, err := m.db(s)
			if err != nil {
				return err
			}
			defer db.Close()
			return f(ctx, db)
		}()
		if err == nil || errors.Is(err, errRowGone) {
			return err
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			if last != nil {
				err = fmt.Errorf("%w (then the deadline passed)", last)
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%d attempts)", err, attempt)
		case <-time.After(interval):
		}
	}
}

// Write implements Persistence.
func (m *MariaDBRows) Write(ctx context.Context, s *Session) error {
	if m.token == "" {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		m.token = hex.EncodeToString(b)
	}
	return m.retry(ctx, s, func(ctx context.Context, db *sql.DB) error {
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS lifecycle (token VARCHAR(32) PRIMARY KEY, written TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"); err != nil {
			return fmt.Errorf("creating the table: %w", err)
		}
		// IGNORE: an attempt whose answer was lost may have written the row already.
		if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO lifecycle (token) VALUES (?)", m.token); err != nil {
			return fmt.Errorf("writing a row: %w", err)
		}
		return nil
	})
}

// Check implements Persistence.
func (m *MariaDBRows) Check(ctx context.Context, s *Session) error {
	return m.retry(ctx, s, func(ctx context.Context, db *sql.DB) error {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM lifecycle WHERE token = ?", m.token).Scan(&n); err != nil {
			return fmt.Errorf("reading the row back: %w", err)
		}
		if n != 1 {
			return errRowGone
		}
		return nil
	})
}
