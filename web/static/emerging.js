/* Emerging hot spots on the supervisor map: the latest saved `hotspots emerging --save` run
   (OGC collection emerging_npas), one NPA polygon per location styled by its pattern, with a legend
   of ArcGIS's 17 pattern names. Reds for hot patterns, blues for cold ones, grey for none.
   Self-contained: map.js announces its Leaflet map with a 'hotspots:map' event; this file adds its
   own pane, toggle and legend. `emerging=1` in the page URL turns the layer on at start. */
(function () {
  'use strict';

  var COLLECTION = '/ogc/collections/emerging_npas';
  var NO_PATTERN = 'No Pattern Detected';
  // One colour per pattern, in the spirit of ArcGIS's renderer: darker = more established.
  var COLOURS = {
    'New Hot Spot': '#fcbba1', 'Consecutive Hot Spot': '#fc9272', 'Intensifying Hot Spot': '#a50f15',
    'Persistent Hot Spot': '#cb181d', 'Diminishing Hot Spot': '#ef3b2c', 'Sporadic Hot Spot': '#fb6a4a',
    'Oscillating Hot Spot': '#f4a582', 'Historical Hot Spot': '#8c6d62',
    'New Cold Spot': '#c6dbef', 'Consecutive Cold Spot': '#9ecae1', 'Intensifying Cold Spot': '#08306b',
    'Persistent Cold Spot': '#08519c', 'Diminishing Cold Spot': '#2171b5', 'Sporadic Cold Spot': '#4292c6',
    'Oscillating Cold Spot': '#92c5de', 'Historical Cold Spot': '#62708c'
  };
  COLOURS[NO_PATTERN] = '#bdbdbd';

  var map = null;
  var layer = null;
  var loaded = false;
  var patterns = [];

  function node(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text) { n.textContent = text; }
    return n;
  }

  function colour(pattern) { return COLOURS[pattern] || COLOURS[NO_PATTERN]; }

  function wanted() { return new URLSearchParams(window.location.search).get('emerging') === '1'; }

  function remember(on) {
    // map.js rewrites the URL on every move; this keeps our one parameter in it.
    var url = new URL(window.location.href);
    if (on) { url.searchParams.set('emerging', '1'); } else { url.searchParams.delete('emerging'); }
    window.history.replaceState(null, '', url.toString());
  }

  var control = L.control({position: 'topright'});
  control.onAdd = function () {
    var div = L.DomUtil.create('div', 'legend emerging-control');
    div.id = 'emerging';
    L.DomEvent.disableClickPropagation(div);
    var label = node('label', {'class': 'check'});
    var box = node('input', {type: 'checkbox', id: 'emerging-toggle'});
    box.checked = wanted();
    label.appendChild(box);
    label.appendChild(document.createTextNode(' Emerging hot spots (saved run)'));
    div.appendChild(label);
    div.appendChild(node('div', {id: 'emerging-about', 'class': 'muted'}));
    div.appendChild(node('div', {id: 'emerging-legend'}));
    box.addEventListener('change', function () { remember(box.checked); show(box.checked); });
    return div;
  };

  function drawLegend(run, counts) {
    var about = document.getElementById('emerging-about');
    about.textContent = run ? 'Run ' + run.run + ': ' + run.source + ', ' + run.first + ' to ' + run.last +
      ' (' + run.steps + ' ' + run.unit + 's); left out: ' + run.left_out : '';
    var box = document.getElementById('emerging-legend');
    box.textContent = '';
    var h = node('h4', {}, 'Emerging hot spot patterns');
    box.appendChild(h);
    patterns.forEach(function (name) {
      var row = node('div', {'class': 'emerging-pattern', 'data-pattern': name});
      row.appendChild(node('i', {style: 'background:' + colour(name)}));
      row.appendChild(document.createTextNode(name + (counts ? ' (' + (counts[name] || 0) + ')' : '')));
      box.appendChild(row);
    });
  }

  function popup(p) {
    function num(x, d) { return x === null || x === undefined ? 'n/a' : Number(x).toFixed(d); }
    return '<strong>NPA ' + p.npa_id + '</strong><br>' + p.pattern +
      '<br>Mann-Kendall trend of Gi* z: z ' + num(p.trend_z, 2) + ', p ' + num(p.trend_p, 3) +
      '<br>hot in ' + num(100 * p.hot_share, 0) + '% of ' + p.steps + ' steps, cold in ' + num(100 * p.cold_share, 0) + '%' +
      '<br>' + p.source_words;
  }

  function load() {
    loaded = true;
    var about = document.getElementById('emerging-about');
    about.textContent = 'loading\u2026';
    // The collection says whether a run is saved: no 404 (and no console error) when none is.
    return fetch(COLLECTION + '?f=json').then(function (r) { return r.json(); }).then(function (c) {
      if (c.run === null || c.run === undefined) {
        about.textContent = 'No emerging hot spot run saved yet (hotspots emerging --save).';
        document.body.setAttribute('data-emerging-loaded', '0');
        return null;
      }
      return fetch(COLLECTION + '/items?f=json&limit=1000&run=' + c.run).then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      }).then(function (fc) {
        var counts = {};
        fc.features.forEach(function (f) { counts[f.properties.pattern] = (counts[f.properties.pattern] || 0) + 1; });
        layer = L.geoJSON(fc, {
          pane: 'emergingPane', className: 'emerging-npa',
          style: function (f) {
            var none = f.properties.pattern === NO_PATTERN;
            return {color: '#555', weight: 0.5, fillColor: colour(f.properties.pattern),
                    fillOpacity: none ? 0.15 : 0.7};
          },
          onEachFeature: function (f, l) { l.bindPopup(popup(f.properties)); }
        });
        var p = fc.features.length ? fc.features[0].properties : null;
        drawLegend(p && {run: c.run, source: p.source_words, first: p.first_step, last: p.last_step, steps: p.steps,
                         unit: p.time_step, left_out: p.left_out}, counts);
        if (document.getElementById('emerging-toggle').checked) { layer.addTo(map); }
        document.body.setAttribute('data-emerging-loaded', String(fc.features.length));
        return layer;
      });
    }).catch(function (err) {
      about.textContent = 'Emerging hot spots could not be loaded: ' + err.message;
    });
  }

  function show(on) {
    document.getElementById('emerging-legend').hidden = !on;
    if (!on) {
      if (layer) { map.removeLayer(layer); }
      return;
    }
    if (layer) { layer.addTo(map); } else if (!loaded) { load(); }
  }

  document.addEventListener('hotspots:map', function (e) {
    map = e.detail.map;
    patterns = e.detail.config.emerging_patterns || Object.keys(COLOURS);
    map.createPane('emergingPane').style.zIndex = 415;   // above the choropleth, below the Gi* outlines
    control.addTo(map);
    drawLegend(null, null);
    map.on('moveend', function () { remember(document.getElementById('emerging-toggle').checked); });
    show(wanted());
  });
}());
