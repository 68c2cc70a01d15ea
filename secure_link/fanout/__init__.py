"""Fan-out: events from one worker to every worker's sockets."""
