"""Bulk data in and out: file import now; bulk export later."""
