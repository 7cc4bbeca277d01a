// Fills an empty time zone field of the form with the browser's own zone (an IANA name),
// so a digest sent at each subscriber's local hour reaches them at theirs. Without
// JavaScript the field stays empty and can be typed in.
(function () {
  var field = document.getElementById("timezone");
  if (!field || field.value) return;
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) field.value = zone;
  } catch (e) {
    // An old browser: the field stays empty.
  }
})();
