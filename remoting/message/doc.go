// Package message owns the bytes of RocketMQ messages as brokers store and return them, byte-exact to the Java
// broker and client: the stored layout of a MessageExt (the body of pull and pop responses), the SEND_BATCH_MESSAGE
// body, the properties string, the "offset message id", and the text formats Pop responses and receipt handles
// carry (ExtraInfoUtil).
//
// It owns bytes and nothing else: no sockets, no state, no clocks, no compression. Every decoder checks lengths
// before it allocates and returns an error, never panics, on malformed input; each has a fuzz target. Where Java
// is lenient (it ignores a field, or returns what it decoded so far) the decoders here say so with an error and,
// where it helps, the prefix they could decode; the doc comment of each function names the Java method it follows.
package message
