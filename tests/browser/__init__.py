"""Browser tests: every notebook in JupyterLab in Chromium, checked on screen."""
