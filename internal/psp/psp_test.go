package psp

import "testing"

func TestAuthorize(t *testing.T) {
	for token, want := range map[string][2]string{
		TokenOK:                {Approved, ""},
		TokenDecline:           {Declined, "card_declined"},
		TokenInsufficientFunds: {Declined, "insufficient_funds"},
		"tok_made_up":          {Declined, "invalid_token"},
	} {
		if outcome, reason := authorize(token); outcome != want[0] || reason != want[1] {
			t.Fatalf("authorize(%s) = %s, %s; want %s, %s", token, outcome, reason, want[0], want[1])
		}
	}
}

func TestJudge(t *testing.T) {
	authorized := history{{OpAuthorize, Approved}: {1, 500}}
	captured := history{{OpAuthorize, Approved}: {1, 500}, {OpCapture, Done}: {1, 500}}
	voided := history{{OpAuthorize, Approved}: {1, 500}, {OpVoid, Done}: {1, 500}}
	refunded := history{{OpAuthorize, Approved}: {1, 500}, {OpCapture, Done}: {1, 500}, {OpRefund, Done}: {1, 500}}
	tests := []struct {
		name    string
		op      string
		amount  int64
		h       history
		outcome string
		reason  string
		moved   int64
	}{
		{"Capture", OpCapture, 500, authorized, Done, "", 500},
		{"CaptureWithoutAuthorization", OpCapture, 500, history{}, Rejected, "no approved authorization", 500},
		{"CaptureAfterVoid", OpCapture, 500, voided, Rejected, "authorization voided", 500},
		{"CaptureTwice", OpCapture, 500, captured, Rejected, "already captured", 500},
		{"CaptureOverTheAuthorization", OpCapture, 501, authorized, Rejected, "amount exceeds authorization", 501},
		{"VoidReleasesTheAuthorizedAmount", OpVoid, 0, authorized, Done, "", 500},
		{"VoidWithoutAuthorization", OpVoid, 0, history{}, Rejected, "no approved authorization", 0},
		{"VoidAfterCapture", OpVoid, 0, captured, Rejected, "already captured; refund instead", 0},
		{"VoidTwice", OpVoid, 0, voided, Rejected, "already voided", 0},
		{"RefundReturnsTheCapturedAmount", OpRefund, 0, captured, Done, "", 500},
		{"RefundWithoutCapture", OpRefund, 0, authorized, Rejected, "nothing captured", 0},
		{"RefundTwice", OpRefund, 0, refunded, Rejected, "already refunded", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outcome, reason, moved := judge(tt.op, tt.amount, tt.h)
			if outcome != tt.outcome || reason != tt.reason || moved != tt.moved {
				t.Fatalf("judge(%s, %d) = %s, %q, %d; want %s, %q, %d", tt.op, tt.amount, outcome, reason, moved, tt.outcome, tt.reason, tt.moved)
			}
		})
	}
}
