package psp

import (
	"testing"

	"github.com/ordermesh/ordermesh/internal/pspapi"
)

func TestAuthorize(t *testing.T) {
	for token, want := range map[string][2]string{
		TokenOK:                {pspapi.OutcomeApproved, ""},
		TokenDecline:           {pspapi.OutcomeDeclined, "card_declined"},
		TokenInsufficientFunds: {pspapi.OutcomeDeclined, "insufficient_funds"},
		"tok_made_up":          {pspapi.OutcomeDeclined, "invalid_token"},
	} {
		if outcome, reason := authorize(token); outcome != want[0] || reason != want[1] {
			t.Fatalf("authorize(%s) = %s, %s; want %s, %s", token, outcome, reason, want[0], want[1])
		}
	}
}

func TestJudge(t *testing.T) {
	authorized := history{{pspapi.OpAuthorize, pspapi.OutcomeApproved}: {1, 500}}
	captured := history{{pspapi.OpAuthorize, pspapi.OutcomeApproved}: {1, 500}, {pspapi.OpCapture, pspapi.OutcomeDone}: {1, 500}}
	voided := history{{pspapi.OpAuthorize, pspapi.OutcomeApproved}: {1, 500}, {pspapi.OpVoid, pspapi.OutcomeDone}: {1, 500}}
	refunded := history{{pspapi.OpAuthorize, pspapi.OutcomeApproved}: {1, 500}, {pspapi.OpCapture, pspapi.OutcomeDone}: {1, 500}, {pspapi.OpRefund, pspapi.OutcomeDone}: {1, 500}}
	tests := []struct {
		name    string
		op      string
		amount  int64
		h       history
		outcome string
		reason  string
		moved   int64
	}{
		{"Capture", pspapi.OpCapture, 500, authorized, pspapi.OutcomeDone, "", 500},
		{"CaptureWithoutAuthorization", pspapi.OpCapture, 500, history{}, pspapi.OutcomeRejected, "no approved authorization", 500},
		{"CaptureAfterVoid", pspapi.OpCapture, 500, voided, pspapi.OutcomeRejected, "authorization voided", 500},
		{"CaptureTwice", pspapi.OpCapture, 500, captured, pspapi.OutcomeRejected, "already captured", 500},
		{"CaptureOverTheAuthorization", pspapi.OpCapture, 501, authorized, pspapi.OutcomeRejected, "amount exceeds authorization", 501},
		{"VoidReleasesTheAuthorizedAmount", pspapi.OpVoid, 0, authorized, pspapi.OutcomeDone, "", 500},
		{"VoidWithoutAuthorization", pspapi.OpVoid, 0, history{}, pspapi.OutcomeRejected, "no approved authorization", 0},
		{"VoidAfterCapture", pspapi.OpVoid, 0, captured, pspapi.OutcomeRejected, "already captured; refund instead", 0},
		{"VoidTwice", pspapi.OpVoid, 0, voided, pspapi.OutcomeRejected, "already voided", 0},
		{"RefundReturnsTheCapturedAmount", pspapi.OpRefund, 0, captured, pspapi.OutcomeDone, "", 500},
		{"RefundWithoutCapture", pspapi.OpRefund, 0, authorized, pspapi.OutcomeRejected, "nothing captured", 0},
		{"RefundTwice", pspapi.OpRefund, 0, refunded, pspapi.OutcomeRejected, "already refunded", 0},
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
