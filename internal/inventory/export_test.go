package inventory

// SetAfterRead sets the hook handle calls once it has read an order's
// state, and returns a function that removes it.
func SetAfterRead(f func(orderID string)) (reset func()) {
	afterRead = f
	return func() { afterRead = func(string) {} }
}
