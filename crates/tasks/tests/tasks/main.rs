//! Tests of the task protocol's codecs without processes: every decoder fed mutated and
//! random bytes (the fuzzing of the protocol), and batches split against a reference.

mod proto_corpus;
mod proto_decoders;
