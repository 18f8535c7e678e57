"""What the processing stages share: setting aside the one item whose processing
fails, so that it never holds up the others, and putting it back after a fix."""
