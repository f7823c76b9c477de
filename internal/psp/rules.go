package psp

import (
	"context"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// decide sets the outcome of a new operation from the order's history.
func (s *Server) decide(ctx context.Context, tx *sqldb.Tx, o *pspapi.Operation, token string) error {
	if o.Op == pspapi.OpAuthorize {
		o.Outcome, o.Reason = authorize(token)
		return nil
	}
	h, err := loadHistory(ctx, tx, o.OrderID)
	if err != nil {
		return err
	}
	o.Outcome, o.Reason, o.AmountCents = judge(o.Op, o.AmountCents, h)
	return nil
}

// authorize is the simulator's answer to an authorization with token.
func authorize(token string) (outcome, reason string) {
	switch token {
	case TokenOK:
		return pspapi.OutcomeApproved, ""
	case TokenDecline:
		return pspapi.OutcomeDeclined, "card_declined"
	case TokenInsufficientFunds:
		return pspapi.OutcomeDeclined, "insufficient_funds"
	}
	return pspapi.OutcomeDeclined, "invalid_token"
}

// history is what an order's operations add up to: count and amount per
// operation and outcome.
type history map[opOutcome]tally

type opOutcome struct{ op, outcome string }

type tally struct {
	n      int
	amount int64
}

// judge decides a capture, void or refund of amount against the order's
// history, as a card network would: the simulator's rules, a pure function.
// It returns the outcome, the reason of a rejection and the amount moved
// (a void or refund moves what was authorized or captured).
func judge(op string, amount int64, h history) (outcome, reason string, moved int64) {
	auths, authAmount := h[opOutcome{pspapi.OpAuthorize, pspapi.OutcomeApproved}].n, h[opOutcome{pspapi.OpAuthorize, pspapi.OutcomeApproved}].amount
	captures, captured := h[opOutcome{pspapi.OpCapture, pspapi.OutcomeDone}].n, h[opOutcome{pspapi.OpCapture, pspapi.OutcomeDone}].amount
	voids, refunds := h[opOutcome{pspapi.OpVoid, pspapi.OutcomeDone}].n, h[opOutcome{pspapi.OpRefund, pspapi.OutcomeDone}].n
	switch op {
	case pspapi.OpCapture:
		switch {
		case auths == 0:
			return pspapi.OutcomeRejected, "no approved authorization", amount
		case voids > 0:
			return pspapi.OutcomeRejected, "authorization voided", amount
		case captures > 0:
			return pspapi.OutcomeRejected, "already captured", amount
		case amount > authAmount:
			return pspapi.OutcomeRejected, "amount exceeds authorization", amount
		}
		return pspapi.OutcomeDone, "", amount
	case pspapi.OpVoid:
		switch {
		case auths == 0:
			return pspapi.OutcomeRejected, "no approved authorization", amount
		case captures > 0:
			return pspapi.OutcomeRejected, "already captured; refund instead", amount
		case voids > 0:
			return pspapi.OutcomeRejected, "already voided", amount
		}
		return pspapi.OutcomeDone, "", authAmount
	case pspapi.OpRefund:
		switch {
		case captures == 0:
			return pspapi.OutcomeRejected, "nothing captured", amount
		case refunds > 0:
			return pspapi.OutcomeRejected, "already refunded", amount
		}
		return pspapi.OutcomeDone, "", captured
	}
	return pspapi.OutcomeRejected, "", amount
}
