//! Mosquitto's `password_file`: `username:hash` per line.
