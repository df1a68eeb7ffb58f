"""Two-way sync: a pure core (``core``) and thin shells (``pull``, ``push``)."""
