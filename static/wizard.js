// The Completion page's Copy button: puts the shell command on the clipboard.
document.addEventListener("click", function (e) {
  var b = e.target.closest("button[data-copy]");
  if (!b) return;
  var t = document.getElementById(b.getAttribute("data-copy"));
  if (!t) return;
  t.select();
  if (navigator.clipboard) {
    navigator.clipboard.writeText(t.value).then(function () { b.textContent = "Copied"; });
  }
});

// A select whose choices say what they do: the line under it follows the choice.
document.addEventListener("change", function (e) {
  var s = e.target;
  if (!s.matches || !s.matches("select")) return;
  var note = document.querySelector('.choice-note[data-for="' + s.id + '"]');
  var o = s.options[s.selectedIndex];
  if (note && o) note.textContent = o.getAttribute("data-note") || "";
});
