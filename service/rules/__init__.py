"""Rule files, their versions, and evaluating events against them."""
