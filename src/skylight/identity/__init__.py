"""Who the caller is and what it may do: roles and the one ``authorize`` (``access``),
credentials that are stored only as hashes (``secrets``), and the first user (``bootstrap``
lives in ``operations``, since it writes the store)."""
