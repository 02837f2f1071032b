"""Measuring results: FID/KID, the domain classifier, cycle error."""
