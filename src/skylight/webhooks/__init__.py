"""Webhooks: alert receivers subscribe to kinds of instance events and get each one as a
signed HTTP POST, with retries, whoever wrote the event and whether or not anybody waited."""
