"""The sentry's face: pages served by the daemon itself for the visitor, the staff and technicians.

- `texts.py`: what the pages say, in English and Chinese (pure);
- `events.py`: a recorded event as a page may see it, built from an allow-list (pure);
- `hub.py`: the pages' state (recent decisions, the day's counts, alarms, health) and the hand-off
  from the hot loop to the server's event loop;
- `server.py`: the tornado server on its own thread; handler modules mount their routes on it;
- `views.py`: the visitor display, the staff view, `/events`, `/health`;
- `static/`, `templates/`: plain HTML, CSS and JavaScript, no build step, nothing from outside.

What this package must never do: make the gate wait for it, or show a code's text, a subject, an
issuer's or a DCC's personal field.
"""
