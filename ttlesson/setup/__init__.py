"""Setting a machine up for the lesson."""
