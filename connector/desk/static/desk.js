// Optional comforts; every page works without this file.
(function () {
  "use strict";
  var reply = document.getElementById("balasan");
  var count = document.getElementById("hitung");
  if (reply && count) {
    var max = parseInt(reply.getAttribute("data-max"), 10);
    var show = function () {
      var left = max - reply.value.length;
      count.textContent = left >= 0 ? "Sisa " + left + " karakter."
        : "Kelebihan " + (-left) + " karakter.";
    };
    reply.addEventListener("input", show);
    show();
  }
  var pick = document.getElementById("form-templat");
  var status = document.getElementById("status");
  if (pick && reply) {
    pick.addEventListener("submit", function (ev) {
      var sel = document.getElementById("templat");
      var opt = sel.options[sel.selectedIndex];
      ev.preventDefault();
      reply.value = opt.getAttribute("data-text");
      if (status) { status.value = opt.value; }
      reply.dispatchEvent(new Event("input"));
      reply.focus();
    });
  }
  var summary = document.getElementById("ringkasan-kesalahan");
  if (summary) { summary.focus(); }
})();
