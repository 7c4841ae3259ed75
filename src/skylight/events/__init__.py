"""Instance events: durable records of everything that happens to an instance, with reasons."""
