"""Labelling sessions: CCMA on a user's own unlabelled images (``ccma session ...``).

``create`` lists and embeds the images, ``engine`` runs the rounds (strategy, student,
calibration, CSV exchange, export), ``store`` is the SQLite database, ``web`` the page.
"""
