"""Checks that compare the pipeline's numbers with Klaviyo's and point at days that need attention."""
