//! Integration tests of chorus-comm. Ranks run as threads of this process, each with its
//! own `World` over real sockets; multi-process behaviour is tested in `chorus-cli`.

mod frame_decoders;
mod handshake_refusals;
mod handshake_tls;
mod support;
mod world_collectives;
mod world_mismatch;
