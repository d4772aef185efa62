"""Filled in by the order-select issue."""
