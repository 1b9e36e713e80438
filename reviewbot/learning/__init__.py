"""Learning from what the team did with each posted finding (pure): the records of
posted findings and their outcome labels, the labelling rules, suppression of what
the team rejected, and the acceptance figures."""
