"""
Test vectors shared by the terminal client and the browser client.
"""
