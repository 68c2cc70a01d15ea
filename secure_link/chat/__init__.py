"""Chat: sending, reading, timers and erasure of messages."""
