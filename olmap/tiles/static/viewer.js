/* olmap viewer: BSE, probability and mg# tiles and the crystal catalogue, in µm.
 *
 * Reads window.OLMAP_SITE (data/site.js: grid, layers, legends) and window.OLMAP_CRYSTALS
 * (data/crystals.js: outlines and attributes), both written by `olmap tiles`. Map
 * coordinates are the section's: x (lng) east and y (lat) north in µm, as in the GeoPackage.
 */
(function () {
  "use strict";
  var S = window.OLMAP_SITE;
  var C = window.OLMAP_CRYSTALS || {columns: [], groups: [], crystals: []};
  if (!S || !window.L) {
    document.getElementById("map").textContent = "data/site.js or Leaflet is missing.";
    return;
  }

  // --- Grid: tile zoom z shows 2^(z - max_zoom) screen px per raster px. ---------------
  var px = S.pixel_size_um;
  var left = S.origin_um[0], top = S.origin_um[1];
  var right = left + S.width_px * px, bottom = top - S.height_px * px;
  var a = 1 / (Math.pow(2, S.max_zoom) * px);
  var crs = L.extend({}, L.CRS.Simple, {
    transformation: new L.Transformation(a, -a * left, -a, a * top)
  });
  var bounds = L.latLngBounds([bottom, left], [top, right]);
  // Tiles are asked for only inside the raster (a hair inside: a tile that merely touches
  // the edge does not exist).
  var eps = 1e-6 * Math.max(right - left, top - bottom);
  var tileBounds = L.latLngBounds([bottom + eps, left + eps], [top - eps, right - eps]);
  var maxZoom = S.max_zoom + 3;

  var map = L.map("map", {
    crs: crs, minZoom: 0, maxZoom: maxZoom, zoomSnap: 0.25, zoomDelta: 0.5,
    attributionControl: false, maxBounds: bounds.pad(0.5), maxBoundsViscosity: 0.8
  });
  // One canvas for all outlines: tens of thousands of polygons stay fast (Leaflet also
  // simplifies each outline for the current zoom and skips those out of view).
  var renderer = L.canvas({padding: 0.3, tolerance: 3});

  // --- Raster layers. -------------------------------------------------------------------
  var baseLayers = {}, overlays = {}, tileLayers = {}, tileErrors = [];
  S.layers.forEach(function (layer) {
    var t = L.tileLayer(layer.url, {
      tileSize: S.tile_size, bounds: tileBounds, minZoom: 0, maxZoom: maxZoom,
      minNativeZoom: 0, maxNativeZoom: S.max_zoom, noWrap: true, keepBuffer: 2,
      className: "olmap-tiles-" + layer.key
    });
    t.on("tileerror", function (e) { tileErrors.push(e.tile && e.tile.src); });
    tileLayers[layer.key] = t;
    (layer.base ? baseLayers : overlays)[layer.title] = t;
  });
  if (tileLayers.bse) tileLayers.bse.addTo(map);
  else if (S.layers.length) tileLayers[S.layers[0].key].addTo(map);

  // --- Crystals: one feature group per class and zoning. --------------------------------
  var col = {};
  C.columns.forEach(function (c, i) { col[c] = i; });
  var groups = C.groups.map(function () { return L.featureGroup(); });
  C.crystals.forEach(function (c) {
    var g = C.groups[c[0]];
    var rings = c[2].map(function (flat) {
      var pts = new Array(flat.length / 2);
      for (var i = 0; i < flat.length; i += 2) pts[i / 2] = [flat[i + 1], flat[i]];
      return pts;
    });
    var poly = L.polygon(rings, {
      renderer: renderer, color: g.colour, weight: 1.3, opacity: 0.95,
      fill: true, fillColor: g.colour, fillOpacity: 0.07
    });
    poly.crystal = c;
    groups[c[0]].addLayer(poly);
  });

  var LABELS = {
    "class": "class", zoning: "zoning", area_um2: "area (µm²)",
    equivalent_diameter_um: "equivalent diameter (µm)", aspect_ratio: "aspect ratio",
    solidity: "solidity", core_rim_ratio: "core/rim BSE ratio", mg_mean: "mg# mean",
    mg_core: "mg# core", mg_rim: "mg# rim", session: "session",
    touches_edge: "touches mosaic edge"
  };
  var DIGITS = {area_um2: 0, equivalent_diameter_um: 1, aspect_ratio: 2, solidity: 3,
                core_rim_ratio: 3, mg_mean: 3, mg_core: 3, mg_rim: 3};

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (ch) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[ch];
    });
  }
  function formatValue(name, v) {
    if (v === null || v === undefined || v === "") return name === "zoning" ? "" : "–";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number" && name in DIGITS) {
      return v.toLocaleString("en-US", {minimumFractionDigits: DIGITS[name],
                                        maximumFractionDigits: DIGITS[name]});
    }
    return escapeHtml(v);
  }
  function popupHtml(c) {
    var g = C.groups[c[0]], v = c[1], id = v[col.id];
    var rows = C.columns.map(function (name, i) {
      if (name === "id") return "";
      var text = formatValue(name, v[i]);
      return text === "" ? "" : "<tr><td>" + (LABELS[name] || escapeHtml(name)) +
        "</td><td>" + text + "</td></tr>";
    }).join("");
    var crop = S.crops ? '<img alt="BSE crop of crystal ' + id + '" src="crops/' +
      encodeURIComponent(g.folder) + "/" + id + '.png">' : "";
    return '<div class="olmap-popup"><b>Crystal <span class="crystal-id">' + id +
      '</span></b> <span style="color:' + g.colour + ';text-shadow:0 0 1px #000">&#9632;</span> ' +
      escapeHtml(g.name) + "<table>" + rows + "</table>" + crop + "</div>";
  }
  groups.forEach(function (group) {
    group.on("click", function (e) {
      L.popup({maxWidth: 320}).setLatLng(e.latlng).setContent(popupHtml(e.layer.crystal))
        .openOn(map);
    });
    group.addTo(map);
  });

  // --- Controls: layers, class filter, legends, scale bar, title. -----------------------
  L.control.layers(baseLayers, overlays, {collapsed: false, position: "topright"}).addTo(map);

  var Filter = L.Control.extend({
    options: {position: "topright"},
    onAdd: function () {
      var div = L.DomUtil.create("div", "olmap-panel olmap-filter");
      var h = L.DomUtil.create("h4", "", div);
      h.textContent = C.crystals.length ? "Crystals (" +
        C.crystals.length.toLocaleString("en-US") + ")" : "No crystal catalogue";
      C.groups.forEach(function (g, i) {
        var label = L.DomUtil.create("label", "", div);
        var box = L.DomUtil.create("input", "", label);
        box.type = "checkbox"; box.checked = true; box.setAttribute("data-group", g.name);
        var sw = L.DomUtil.create("span", "swatch", label);
        sw.style.borderColor = g.colour;
        L.DomUtil.create("span", "name", label).textContent = g.name;
        L.DomUtil.create("span", "count", label).textContent = g.count.toLocaleString("en-US");
        L.DomEvent.on(box, "change", function () {
          if (box.checked) map.addLayer(groups[i]); else map.removeLayer(groups[i]);
        });
      });
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    }
  });
  new Filter().addTo(map);

  var Legend = L.Control.extend({
    options: {position: "bottomright"},
    onAdd: function () {
      this._div = L.DomUtil.create("div", "olmap-panel olmap-legend");
      L.DomEvent.disableClickPropagation(this._div);
      return this._div;
    },
    update: function () {
      var html = S.layers.filter(function (l) {
        return l.legend && map.hasLayer(tileLayers[l.key]);
      }).map(function (l) {
        var g = l.legend;
        return '<div class="entry" data-layer="' + l.key + '"><h4>' + escapeHtml(g.label) +
          '</h4><div class="bar" style="background:linear-gradient(to right,' +
          g.stops.join(",") + ')"></div><div class="ticks"><span>' + g.vmin +
          "</span><span>" + +((g.vmin + g.vmax) / 2).toFixed(4) + "</span><span>" + g.vmax +
          "</span></div></div>";
      }).join("");
      this._div.innerHTML = html;
      this._div.style.display = html ? "" : "none";
    }
  });
  var legend = new Legend().addTo(map);
  map.on("baselayerchange overlayadd overlayremove", function () { legend.update(); });
  legend.update();

  // Leaflet's own scale bar speaks metres; this one reads the CRS units, µm.
  var Scale = L.Control.extend({
    options: {position: "bottomleft", maxWidth: 140},
    onAdd: function () {
      this._div = L.DomUtil.create("div", "olmap-scale");
      map.on("zoomend moveend resize", this.update, this);
      return this._div;
    },
    update: function () {
      var y = map.getSize().y / 2;
      var p0 = map.containerPointToLatLng([0, y]);
      var p1 = map.containerPointToLatLng([this.options.maxWidth, y]);
      var um = Math.abs(p1.lng - p0.lng);
      var pow = Math.pow(10, Math.floor(Math.log10(um)));
      var d = um / pow, nice = (d >= 5 ? 5 : d >= 2 ? 2 : 1) * pow;
      this._div.style.width = Math.round(this.options.maxWidth * nice / um) + "px";
      this._div.textContent = nice >= 1000 ? +(nice / 1000).toPrecision(3) + " mm" :
        +nice.toPrecision(3) + " µm";
    }
  });
  var scale = new Scale().addTo(map);

  document.getElementById("title-text").textContent = S.title;
  document.title = S.title + " – olmap viewer";
  var info = document.getElementById("title-info");
  info.textContent = S.width_px.toLocaleString("en-US") + " × " +
    S.height_px.toLocaleString("en-US") + " px at " + px + " µm/px";
  S.downloads.forEach(function (d) {
    var link = document.createElement("a");
    link.href = d.href; link.textContent = d.title; link.setAttribute("download", "");
    info.appendChild(link);
  });

  map.fitBounds(bounds);
  scale.update();

  // For scripts and tests: the map, its layers and coordinates of a point in µm.
  window.olmapViewer = {
    map: map, tileLayers: tileLayers, groups: groups, tileErrors: tileErrors,
    crystalCount: function () {
      return groups.reduce(function (n, g) { return n + g.getLayers().length; }, 0);
    },
    // Where the point (x, y) in µm is in the page, in CSS px (for clicks).
    pagePoint: function (xUm, yUm) {
      var p = map.latLngToContainerPoint([yUm, xUm]);
      var box = map.getContainer().getBoundingClientRect();
      return [box.left + p.x, box.top + p.y];
    }
  };
})();
