"""The readers' side: signed links (tokens.py) and the web process that answers them (app.py,
`digestbot serve`)."""
