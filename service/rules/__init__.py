"""Rule files, their versions, and evaluating events against them."""

# The task that evaluates resolved events (the events outbox), named here so that
# whatever adds events on a profile can nudge it without importing the rules service.
EVALUATE_TASK = "service.rules.tasks.evaluate_pending"
