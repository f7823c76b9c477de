// Package domain is the notification rules: what the customer is told of
// each step of an order, pure functions of the event's data. It imports
// the event catalog and the standard library only
// (TestDomainsImportNothing).
package domain

import "github.com/ordermesh/ordermesh/internal/event"

// Message is what a customer is told.
type Message struct{ Subject, Body string }

// Placed is the message of order.placed.
func Placed(orderID string) Message {
	return Message{"We received your order", "Order " + orderID + " is being processed."}
}

// Confirmed is the message of order.confirmed.
func Confirmed(orderID string) Message {
	return Message{"Your order is confirmed", "Order " + orderID + " is paid and will ship soon."}
}

// Shipped is the message of shipment.created.
func Shipped(orderID string, d event.Shipment) Message {
	return Message{"Your order has shipped", "Order " + orderID + " is on its way, tracking " + d.Tracking + "."}
}

// Completed is the message of order.completed.
func Completed(orderID string) Message {
	return Message{"Your order is complete", "Thank you for order " + orderID + "."}
}

// Cancelled is the message of order.cancelled.
func Cancelled(orderID string, d event.Cancelled) Message {
	return Message{"Your order was cancelled", "Order " + orderID + " was cancelled (" + d.Reason + "). You have not been charged."}
}
