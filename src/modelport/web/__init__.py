"""The web dashboard (``modelport.web.dashboard``) and the static assets it serves."""
