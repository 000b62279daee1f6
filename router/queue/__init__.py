"""Durable queues: requests kept when every model of their route is down, and the workers that drain them."""
