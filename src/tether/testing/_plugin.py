"""
tether's pytest plugin (entry point ``pytest11``): fixtures for users' tests.
"""
