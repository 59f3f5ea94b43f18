//! The layers a connection's bytes may pass through between the socket and the core.
//!
//! - [`ws`]: MQTT over WebSocket (the HTTP upgrade, then binary messages).

pub mod ws;
