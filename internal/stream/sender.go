package stream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/internal/redact"
	"github.com/tidemark/tidemark/internal/retry"
)

// Webhook is one configured webhook, as the stream uses it.
type Webhook struct {
	Org, Name string
	URL       string
	Secret    []byte // never logged
	Filter    Filter // Org is set to the webhook's org
	BatchSize int
	Timeout   time.Duration
	RetryFor  time.Duration
}

// Request headers. SignatureHeader is "t=<unix seconds>,v1=<hex>", where hex
// is the HMAC-SHA256, keyed with the webhook's secret, of "<t>.<body>".
const (
	SignatureHeader   = "Tidemark-Signature"
	IdempotencyHeader = "Idempotency-Key"
	WebhookHeader     = "Tidemark-Webhook"
	AttemptHeader     = "Tidemark-Attempt"
)

// Sign returns the Tidemark-Signature header value for body at time t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// SendError is a failed webhook request.
type SendError struct {
	Status    int // 0 when no response arrived
	Retryable bool
	After     time.Duration // the response's Retry-After, 0 when absent or 0
	Err       error
}

// RetryAfter is the receiver's Retry-After, for retry.Hint.
func (e *SendError) RetryAfter() time.Duration { return e.After }

func (e *SendError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err)
	}
	return e.Err.Error()
}

func (e *SendError) Unwrap() error { return e.Err }

// Sender posts webhook requests. Safe for concurrent use.
type Sender struct {
	Client    *http.Client
	UserAgent string
	Now       func() time.Time
}

// NewSender returns a Sender with its own connection pool.
func NewSender(userAgent string, now func() time.Time) *Sender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &Sender{Client: &http.Client{Transport: tr}, UserAgent: userAgent, Now: now}
}

// Send posts body to w once, within w.Timeout. A 2xx answer is success (nil).
// Network errors, timeouts, 408, 425, 429 and 5xx are retryable; other
// answers are permanent. Errors never contain the URL's query or the secret.
func (s *Sender) Send(ctx context.Context, w *Webhook, key string, body []byte, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return &SendError{Err: fmt.Errorf("build request: %w", redactErr(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.UserAgent)
	req.Header.Set(SignatureHeader, Sign(w.Secret, s.Now(), body))
	req.Header.Set(IdempotencyHeader, key)
	req.Header.Set(WebhookHeader, w.Name)
	req.Header.Set(AttemptHeader, strconv.Itoa(attempt))
	resp, err := s.Client.Do(req)
	if err != nil {
		return &SendError{Retryable: true, Err: redactErr(err)}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	c := resp.StatusCode
	after, _ := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), s.Now())
	return &SendError{Status: c, Retryable: c == 408 || c == 425 || c == 429 || c >= 500, After: after,
		Err: fmt.Errorf("receiver answered %q", bytes.TrimSpace(msg))}
}

// redactErr removes the URL (its query may hold a token) from a *url.Error.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, redact.URL(ue.URL, nil), ue.Err)
	}
	return err
}
