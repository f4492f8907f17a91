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
