"""What runs when: schedule.yaml's schedules as triggers and their upcoming runs
(``triggers``), what one run does, composed from the stations (``jobs``), and the
scheduler that runs them in the foreground (``daemon``)."""
