"""The publication's website: article records -> pages (``render``) -> the site folder
(``files``)."""
