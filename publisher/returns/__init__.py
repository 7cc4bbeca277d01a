"""Mail that comes back in: bounces (DSNs, and the older formats servers still send),
feedback-loop complaints, auto-replies and mailed unsubscribes, each read and decided
(``classify``)."""
