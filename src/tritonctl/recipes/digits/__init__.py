"""The digits pipeline: a CNN teacher, a distilled student, pruned and INT8 variants."""
