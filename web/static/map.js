/* The supervisor map: one set of filters drives the choropleth, the Gi* hot spots, the density
   tiles, the individual calls, the homicide victims and the side panel. The whole view (filters, layers, centre, zoom,
   selected area) is kept in the page URL so a link reopens exactly this view.
   Plain JavaScript on Leaflet (served from the xstatic-leaflet package); no build step. */
(function () {
  'use strict';

  var FILTER_KEYS = ['preset', 'start', 'end', 'division', 'category', 'violent', 'min_p', 'origin'];
  var LAYER_KEYS = ['areas', 'divisions', 'hotspots', 'heat', 'calls', 'homicides'];
  // Homicides have calendar dates and no taxonomy category or model label: only these filters apply.
  var HOMICIDE_FILTERS = ['preset', 'start', 'end', 'division'];
  var DEFAULT_LAYERS = ['areas', 'divisions', 'hotspots', 'calls'];
  var CHOROPLETH = ['#ffffb2', '#fecc5c', '#fd8d3c', '#f03b20', '#bd0026'];
  var ZERO_COLOUR = '#f4f4f4';
  var NO_RATE_COLOUR = '#d9d9d9';
  // ArcGIS's hot spot palette, in the server's class order (hot 99/95/90, not significant, cold 90/95/99).
  var HOTSPOT_COLOURS = ['#d62f27', '#ed7551', '#fab984', null, '#c0ccbe', '#849eba', '#4575b5'];
  var MEASURE_LABELS = {
    violent: 'Violent calls', violent_per_1000: 'Violent calls per 1,000 residents',
    calls: 'All calls', calls_per_1000: 'All calls per 1,000 residents'
  };

  var config = null;
  var map = null;
  var layers = {};          // Leaflet layers by key
  var generation = 0;       // bumps on each refresh; late answers to older requests are dropped
  var callsAbort = null;
  var homicidesAbort = null;
  var choroplethBreaks = [];
  var state = readUrl();

  // --- small helpers ---------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else if (k === 'style') { node.style.cssText = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c != null) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) { return 'n/a'; }
    return Number(n).toLocaleString('en-US', {maximumFractionDigits: digits === undefined ? 0 : digits});
  }

  function pct(x, digits) { return x === null || x === undefined ? 'n/a' : (x * 100).toFixed(digits === undefined ? 1 : digits) + '%'; }

  function notice(key, text, isError) {
    var box = document.getElementById('notices');
    var old = box.querySelector('[data-key="' + key + '"]');
    if (old) { old.remove(); }
    if (text) { box.appendChild(el('div', {'class': 'notice' + (isError ? ' error' : ''), 'data-key': key, text: text})); }
  }

  function fetchJson(url, options) {
    return fetch(url, options).then(function (r) {
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          var err = new Error((body && body.description) || ('HTTP ' + r.status));
          err.status = r.status;
          throw err;
        });
      }
      return r.json();
    });
  }

  // --- the view in the URL ---------------------------------------------------------------------
  function readUrl() {
    var q = new URLSearchParams(window.location.search);
    var s = {filters: {}, level: 'npa', measure: 'violent', layers: DEFAULT_LAYERS.slice(), view: null, selected: null};
    var anyFilter = false;
    FILTER_KEYS.forEach(function (k) {
      if (q.has(k)) { anyFilter = true; if (q.get(k)) { s.filters[k] = q.get(k); } }
    });
    if (!anyFilter) { s.filters.preset = '28d'; }   // a supervisor's usual look: the last four weeks
    if (q.get('level') === 'division' || q.get('level') === 'npa') { s.level = q.get('level'); }
    if (MEASURE_LABELS[q.get('measure')]) { s.measure = q.get('measure'); }
    if (q.has('layers')) { s.layers = q.get('layers').split(',').filter(function (k) { return LAYER_KEYS.indexOf(k) >= 0; }); }
    var lat = parseFloat(q.get('lat')), lon = parseFloat(q.get('lon')), z = parseFloat(q.get('z'));
    if (isFinite(lat) && isFinite(lon) && isFinite(z)) { s.view = {lat: lat, lon: lon, z: z}; }
    var sel = (q.get('sel') || '').split(':');
    if (sel.length === 2 && (sel[0] === 'division' || sel[0] === 'npa') && sel[1]) { s.selected = {level: sel[0], id: sel[1]}; }
    return s;
  }

  function filterParams() {
    var p = new URLSearchParams();
    FILTER_KEYS.forEach(function (k) { if (state.filters[k]) { p.set(k, state.filters[k]); } });
    return p;
  }

  function writeUrl() {
    var p = new URLSearchParams();
    FILTER_KEYS.forEach(function (k) { p.set(k, state.filters[k] || ''); });
    p.set('level', state.level);
    p.set('measure', state.measure);
    p.set('layers', state.layers.join(','));
    if (map) {
      var c = map.getCenter();
      p.set('lat', c.lat.toFixed(5));
      p.set('lon', c.lng.toFixed(5));
      p.set('z', String(map.getZoom()));
    }
    if (state.selected) { p.set('sel', state.selected.level + ':' + state.selected.id); }
    var url = window.location.pathname + '?' + p.toString();
    window.history.replaceState(null, '', url);
    document.getElementById('share-link').href = url;
  }

  // --- controls --------------------------------------------------------------------------------
  function buildControls() {
    var preset = document.getElementById('f-preset');
    config.presets.forEach(function (p) { preset.appendChild(el('option', {value: p.id, text: p.label})); });
    var division = document.getElementById('f-division');
    config.divisions.forEach(function (d) { division.appendChild(el('option', {value: d.id, text: d.short_name + ' (' + d.id + ')'})); });
    var category = document.getElementById('f-category');
    config.categories.forEach(function (c) { category.appendChild(el('option', {value: c.id, title: c.description, text: c.id.replace(/_/g, ' ')})); });
    document.getElementById('calls-zoom').textContent = config.calls_min_zoom;
    if (config.data.first) {
      document.getElementById('data-range').textContent = 'Data ' + config.data.first + ' to ' + config.data.last;
      ['f-start', 'f-end'].forEach(function (id) {
        var input = document.getElementById(id);
        input.min = config.data.first;
        input.max = config.data.last;
      });
    }
    showState();

    var form = document.getElementById('filters');
    form.addEventListener('submit', function (e) { e.preventDefault(); });
    form.addEventListener('change', function (e) {
      var t = e.target;
      if (t.dataset.layer) {
        state.layers = LAYER_KEYS.filter(function (k) { return form.querySelector('[data-layer="' + k + '"]').checked; });
      } else if (t.name === 'level') {
        state.level = t.value;
      } else if (t.name === 'measure') {
        state.measure = t.value;
      } else if (t.name === 'violent') {
        setFilter('violent', t.checked ? 'true' : '');
      } else if (t.name === 'preset') {
        setFilter('preset', t.value);
        // A preset and explicit dates would contradict each other: the latest choice wins.
        if (t.value) { setFilter('start', ''); setFilter('end', ''); }
      } else if (t.name === 'start' || t.name === 'end') {
        setFilter(t.name, t.value);
        if (t.value) { setFilter('preset', ''); }
      } else if (FILTER_KEYS.indexOf(t.name) >= 0) {
        setFilter(t.name, t.value);
        if (t.name === 'division' && t.value) { zoomToDivision(t.value); }
      }
      showState();
      refresh();
    });
  }

  function setFilter(k, v) { if (v) { state.filters[k] = v; } else { delete state.filters[k]; } }

  function showState() {
    var f = state.filters;
    document.getElementById('f-preset').value = f.preset || '';
    document.getElementById('f-start').value = f.start || '';
    document.getElementById('f-end').value = f.end || '';
    document.getElementById('f-division').value = f.division || '';
    document.getElementById('f-category').value = f.category || '';
    document.getElementById('f-violent').checked = f.violent === 'true';
    document.getElementById('f-min-p').value = f.min_p || '';
    document.getElementById('f-level').value = state.level;
    document.getElementById('f-measure').value = state.measure;
    LAYER_KEYS.forEach(function (k) {
      document.querySelector('[data-layer="' + k + '"]').checked = state.layers.indexOf(k) >= 0;
    });
  }

  function on(key) { return state.layers.indexOf(key) >= 0; }

  function zoomToDivision(code) {
    var lyr = layers.divisionShapes;
    if (!lyr) { return; }
    lyr.eachLayer(function (l) { if (l.feature.id === code) { map.fitBounds(l.getBounds(), {padding: [10, 10]}); } });
  }

  // --- the map ---------------------------------------------------------------------------------
  function buildMap() {
    map = L.map('map', {zoomControl: true, preferCanvas: false, zoomSnap: 0.5});
    // One pane per layer, so the stacking is fixed whatever order the data arrive in.
    [['heatPane', 350], ['areasPane', 400], ['divisionsPane', 410], ['hotspotsPane', 420], ['callsPane', 450],
     ['homicidesPane', 460]].forEach(function (p) {
      map.createPane(p[0]).style.zIndex = p[1];
    });
    map.getPane('divisionsPane').style.pointerEvents = 'none';
    if (config.basemap && config.basemap.url) {
      L.tileLayer(config.basemap.url, {attribution: config.basemap.attribution, maxZoom: 19})
        .on('tileerror', function () { notice('basemap', 'Some basemap tiles could not be loaded.'); })
        .addTo(map);
    }
    if (state.view) {
      map.setView([state.view.lat, state.view.lon], state.view.z);
    } else {
      map.setView([35.25, -80.83], 10);   // Mecklenburg County, refined once the divisions arrive
    }
    map.on('moveend', function () { writeUrl(); loadCalls(); });
    legend.addTo(map);
  }

  var legend = L.control({position: 'bottomright'});
  legend.onAdd = function () { this._div = L.DomUtil.create('div', 'legend'); this._div.id = 'legend'; return this._div; };
  legend.update = function () {
    var div = this._div;
    if (!div) { return; }
    div.textContent = '';
    if (on('areas')) {
      var sec = el('div', {'class': 'section'}, [el('h4', {text: MEASURE_LABELS[effectiveMeasure()] + ' (' + (state.level === 'npa' ? 'NPAs' : 'divisions') + ')'})]);
      sec.appendChild(el('div', {}, [el('i', {style: 'background:' + ZERO_COLOUR}), 'none']));
      choroplethBreaks.forEach(function (b, i) {
        var lo = i === 0 ? 0 : choroplethBreaks[i - 1];
        sec.appendChild(el('div', {}, [el('i', {style: 'background:' + CHOROPLETH[i]}), '> ' + fmt(lo, 2) + ' to ' + fmt(b, 2)]));
      });
      if (effectiveMeasure().indexOf('per_1000') > 0) {
        sec.appendChild(el('div', {}, [el('i', {style: 'background:' + NO_RATE_COLOUR}), 'no residents']));
      }
      div.appendChild(sec);
    }
    if (on('hotspots')) {
      var hs = el('div', {'class': 'section'}, [el('h4', {text: 'Hot spots (Gi*, FDR-corrected' +
        (effectiveMeasure() === 'violent_per_1000' ? ', on violent calls per 1,000 residents' : '') + ')'})]);
      config.hotspot_classes.forEach(function (name, i) {
        var colour = HOTSPOT_COLOURS[i];
        hs.appendChild(el('div', {'class': 'hotspot-class'}, [
          el('i', {'class': 'line', style: 'border-top-color:' + (colour || '#bbb') + (colour ? '' : ';border-top-style:dotted')}), name]));
      });
      if (config.accuracy) {   // the latest `hotspots accuracy` run: hot spots on T scored on violence in T+1
        var npa = config.accuracy.rows.filter(function (r) { return r.level === 'npa' && r.pai !== null; });
        hs.appendChild(el('div', {'class': 'accuracy', id: 'accuracy', text: 'Accuracy on ' + config.accuracy.test[0] +
          '..: ' + npa.map(function (r) { return r.source + ' PAI ' + fmt(r.pai, 2) + ', hit ' + fmt(100 * r.hit_rate, 0) + '%'; }).join('; ')}));
      }
      div.appendChild(hs);
    }
    if (on('heat')) { div.appendChild(el('div', {'class': 'section'}, [el('h4', {text: 'Density: darker = more calls per sq mi'})])); }
    // What the map is made of: real CMPD records, generated (synthetic) rows, or both, never silently mixed.
    var src = el('div', {'class': 'section', id: 'data-origin'}, [el('h4', {text: 'Data shown'})]);
    src.appendChild(el('div', {text: 'Calls: ' + originText(config.origins && config.origins.calls, state.filters.origin)}));
    div.appendChild(src);
    if (on('calls')) {
      div.appendChild(el('div', {'class': 'section'}, [el('h4', {text: 'Calls (zoom ' + config.calls_min_zoom + '+)'}),
        el('div', {}, [el('i', {style: 'background:#b2182b;border-radius:50%'}), 'labelled violent']),
        el('div', {}, [el('i', {style: 'background:#4d4d4d;border-radius:50%'}), 'other'])]));
    }
    if (on('homicides')) {
      div.appendChild(el('div', {'class': 'section'}, [el('h4', {text: 'Homicide victims (CMPD, real)'}),
        el('div', {}, [el('i', {style: 'background:#000;border:2px solid #ffd400;border-radius:50%'}), 'one victim'])]));
    }
  };

  function originText(counts, chosen) {
    if (!counts) { return 'unknown'; }
    var real = counts.real || 0, synthetic = counts.synthetic || 0;
    if (chosen === 'real') { return fmt(real) + ' real CMPD records only (' + fmt(synthetic) + ' synthetic hidden)'; }
    if (chosen === 'synthetic') { return fmt(synthetic) + ' synthetic (generated) only (' + fmt(real) + ' real hidden)'; }
    if (real && synthetic) { return fmt(real) + ' real + ' + fmt(synthetic) + ' synthetic: pick one with origin'; }
    if (synthetic) { return 'all ' + fmt(synthetic) + ' synthetic (generated by the demo, not real calls)'; }
    return 'all ' + fmt(real) + ' real records';
  }

  function effectiveMeasure() {
    // Divisions have no population: their rates fall back to counts.
    return state.level === 'division' ? state.measure.replace('_per_1000', '') : state.measure;
  }

  function breaks(values) {
    // Quantile classes of the non-zero values: a skewed count still spreads over the five colours.
    var v = values.filter(function (x) { return x > 0; }).sort(function (a, b) { return a - b; });
    if (!v.length) { return []; }
    var out = [];
    for (var i = 1; i <= CHOROPLETH.length; i++) {
      var b = v[Math.min(v.length - 1, Math.ceil(i * v.length / CHOROPLETH.length) - 1)];
      if (!out.length || b > out[out.length - 1]) { out.push(b); }
    }
    return out;
  }

  function colourFor(x) {
    if (x === null || x === undefined) { return NO_RATE_COLOUR; }
    if (x <= 0) { return ZERO_COLOUR; }
    for (var i = 0; i < choroplethBreaks.length; i++) { if (x <= choroplethBreaks[i]) { return CHOROPLETH[i]; } }
    return CHOROPLETH[CHOROPLETH.length - 1];
  }

  function areaTooltip(p) {
    var node = el('div', {}, [el('strong', {text: p.name}), el('br'), fmt(p.calls) + ' calls, ' + fmt(p.violent) + ' labelled violent']);
    if (p.violent_per_1000 !== undefined && p.violent_per_1000 !== null) {
      node.appendChild(el('br'));
      node.appendChild(document.createTextNode(fmt(p.violent_per_1000, 2) + ' violent per 1,000 residents'));
    }
    return node;
  }

  function select(level, id) {
    state.selected = {level: level, id: String(id)};
    writeUrl();
    loadPanel();
    highlightSelected();
  }

  function highlightSelected() {
    [layers.areas, layers.divisionShapes].forEach(function (group) {
      if (!group) { return; }
      group.eachLayer(function (l) {
        var picked = state.selected && state.selected.level === l.feature.properties.level && String(l.feature.id) === state.selected.id;
        if (picked) { l.setStyle({weight: 3, color: '#00e5ff'}); l.bringToFront(); } else { group.resetStyle(l); }
      });
    });
  }

  function drawAreas(geojson, level) {
    var measure = effectiveMeasure();
    geojson.features.forEach(function (f) { f.properties.level = level; });
    choroplethBreaks = breaks(geojson.features.map(function (f) { return f.properties[measure]; }));
    if (layers.areas) { map.removeLayer(layers.areas); }
    layers.areas = L.geoJSON(geojson, {
      pane: 'areasPane',
      className: 'area area-' + level,
      style: function (f) {
        return {fillColor: colourFor(f.properties[measure]), fillOpacity: 0.7, color: '#666', weight: level === 'npa' ? 0.5 : 1};
      },
      onEachFeature: function (f, l) {
        l.bindTooltip(areaTooltip(f.properties), {sticky: true});
        l.on('click', function () { select(level, f.id); });
      }
    });
    if (on('areas')) { layers.areas.addTo(map); }
    highlightSelected();
  }

  function drawDivisionOutlines(geojson) {
    geojson.features.forEach(function (f) { f.properties.level = 'division'; });
    var first = !layers.divisionShapes;
    if (layers.divisionShapes) { map.removeLayer(layers.divisionShapes); }
    layers.divisionShapes = L.geoJSON(geojson, {
      pane: 'divisionsPane', className: 'division-outline', interactive: false,
      style: function () { return {fill: false, color: '#1f3b5a', weight: 2, dashArray: '6 3'}; }
    });
    if (on('divisions')) { layers.divisionShapes.addTo(map); }
    if (first && !state.view) { map.fitBounds(layers.divisionShapes.getBounds()); }
  }

  function drawHotspots(geojson) {
    if (layers.hotspots) { map.removeLayer(layers.hotspots); }
    var order = geojson.classes;
    layers.hotspots = L.geoJSON(geojson, {
      pane: 'hotspotsPane', className: 'hotspot',
      style: function (f) {
        var colour = HOTSPOT_COLOURS[order.indexOf(f.properties.hotspot_class)];
        // Outlines, so the choropleth underneath stays readable; not significant NPAs draw nothing.
        return colour ? {fill: false, color: colour, weight: 3.5, opacity: 0.95} : {stroke: false, fill: false};
      },
      interactive: false
    });
    if (on('hotspots')) { layers.hotspots.addTo(map); }
    var s = geojson.summary || {};
    var hot = Object.keys(s).filter(function (k) { return k.indexOf('Hot') === 0; }).reduce(function (a, k) { return a + s[k]; }, 0);
    var cold = Object.keys(s).filter(function (k) { return k.indexOf('Cold') === 0; }).reduce(function (a, k) { return a + s[k]; }, 0);
    document.getElementById('legend').setAttribute('data-hot', hot);
    document.getElementById('legend').setAttribute('data-cold', cold);
  }

  function heatUrl() { return '/heat/{z}/{x}/{y}.png?' + filterParams().toString(); }

  function updateHeat() {
    if (!on('heat')) {
      if (layers.heat) { map.removeLayer(layers.heat); }
      notice('heat', null);
      return;
    }
    if (!layers.heat) {
      layers.heat = L.tileLayer(heatUrl(), {pane: 'heatPane', opacity: 0.75, maxZoom: 19, className: 'heat-tiles'});
      layers.heat.on('tileerror', function () { notice('heat', 'The density layer could not be loaded (heat tiles unavailable).', true); });
      layers.heat.on('tileload', function () { notice('heat', null); });
    } else {
      layers.heat.setUrl(heatUrl());
    }
    if (!map.hasLayer(layers.heat)) { layers.heat.addTo(map); }
  }

  function loadCalls() {
    if (callsAbort) { callsAbort.abort(); callsAbort = null; }
    if (layers.calls) { layers.calls.clearLayers(); }
    if (!on('calls')) { notice('calls', null); return; }
    if (map.getZoom() < config.calls_min_zoom) {
      notice('calls', null);
      return;
    }
    if (!layers.calls) { layers.calls = L.layerGroup().addTo(map); }
    var b = map.getBounds();
    var p = filterParams();
    p.set('bbox', [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (x) { return x.toFixed(6); }).join(','));
    p.set('limit', String(config.calls_limit));
    callsAbort = new AbortController();
    fetchJson('/ogc/collections/calls/items?' + p.toString(), {signal: callsAbort.signal, headers: {Accept: 'application/geo+json'}})
      .then(function (fc) {
        notice('calls', null);
        var when = new Intl.DateTimeFormat('en-US', {timeZone: config.timezone, dateStyle: 'medium', timeStyle: 'short'});
        (fc.features || []).forEach(function (f) {
          if (!f.geometry) { return; }
          var p = f.properties || {};
          var marker = L.circleMarker([f.geometry.coordinates[1], f.geometry.coordinates[0]], {
            pane: 'callsPane', className: 'call', radius: 5, weight: 1, color: '#fff', fillOpacity: 0.85,
            fillColor: p.violent ? '#b2182b' : '#4d4d4d'
          });
          var content = el('div', {'class': 'call-popup'}, [
            el('strong', {text: p.received_at ? when.format(new Date(p.received_at)) : 'time unknown'}), el('br'),
            'Type: ' + (p.call_type || 'n/a'), el('br'),
            'Category: ' + (p.category || 'unknown').replace(/_/g, ' '), el('br'),
            'Violent probability: ' + (p.p_violent === null || p.p_violent === undefined ? 'n/a' : fmt(p.p_violent, 3)) +
              (p.violent ? ' (labelled violent)' : '')
          ]);
          marker.bindPopup(content);
          layers.calls.addLayer(marker);
        });
        var matched = fc.numberMatched;
        if (matched && matched > (fc.features || []).length) {
          notice('calls', 'Showing ' + fmt((fc.features || []).length) + ' of ' + fmt(matched) + ' calls here; zoom in for all.');
        }
      })
      .catch(function (err) {
        if (err.name === 'AbortError') { return; }
        notice('calls', 'Individual calls could not be loaded (' + err.message + ').', true);
      });
  }

  function loadHomicides() {
    if (homicidesAbort) { homicidesAbort.abort(); homicidesAbort = null; }
    if (layers.homicides) { layers.homicides.clearLayers(); }
    if (!on('homicides')) { notice('homicides', null); return; }
    if (!layers.homicides) { layers.homicides = L.layerGroup().addTo(map); }
    var p = new URLSearchParams();
    HOMICIDE_FILTERS.forEach(function (k) { if (state.filters[k]) { p.set(k, state.filters[k]); } });
    p.set('limit', String(config.homicides_limit));
    homicidesAbort = new AbortController();
    fetchJson('/ogc/collections/homicides/items?' + p.toString(), {signal: homicidesAbort.signal, headers: {Accept: 'application/geo+json'}})
      .then(function (fc) {
        var features = fc.features || [];
        var drawn = 0;
        features.forEach(function (f) {
          if (!f.geometry) { return; }   // published without a location
          var q = f.properties || {};
          var marker = L.circleMarker([f.geometry.coordinates[1], f.geometry.coordinates[0]], {
            pane: 'homicidesPane', className: 'homicide', radius: 5, weight: 2, color: '#ffd400', fillColor: '#000', fillOpacity: 0.9
          });
          marker.bindPopup(el('div', {'class': 'homicide-popup'}, [
            el('strong', {text: 'Homicide, reported ' + q.date_reported}), el('br'),
            'Victim: ' + [q.age === null || q.age === undefined ? 'age unknown' : 'age ' + q.age, q.gender, q.race_ethnicity]
              .filter(function (x) { return x; }).join(', '), el('br'),
            'Weapon: ' + (q.weapon || 'n/a') + ' · Circumstances: ' + (q.circumstances || 'n/a') +
              (q.intimate_partner ? ' (intimate partner)' : ''), el('br'),
            'Clearance: ' + (q.clearance_status || 'n/a') + ' · Report ' + q.crime_report_id
          ]));
          layers.homicides.addLayer(marker);
          drawn += 1;
        });
        document.body.setAttribute('data-homicides-drawn', String(drawn));
        var unplaced = features.length - drawn;
        var more = fc.numberMatched > features.length ? ' (the first ' + fmt(features.length) + ' of ' + fmt(fc.numberMatched) + ')' : '';
        notice('homicides', fmt(fc.numberMatched) + ' homicide victims in this period' + more +
          (unplaced ? '; ' + fmt(unplaced) + ' published without a location are not drawn.' : '.'));
      })
      .catch(function (err) {
        if (err.name === 'AbortError') { return; }
        notice('homicides', 'Homicides could not be loaded (' + err.message + ').', true);
      });
  }

  // --- loading ---------------------------------------------------------------------------------
  function refresh() {
    var gen = ++generation;
    writeUrl();
    legend.update();
    var qs = filterParams().toString();
    var suffix = qs ? '?' + qs : '';
    fetchJson('/api/areas/division' + suffix).then(function (fc) {
      if (gen !== generation) { return; }
      notice('divisions', null);
      drawDivisionOutlines(fc);
      if (state.level === 'division') {
        drawAreas(fc, 'division');
        legend.update();
        document.body.setAttribute('data-areas-loaded', String(gen));
      }
    }).catch(function (err) { if (gen === generation) { notice('divisions', 'Divisions could not be loaded: ' + err.message, true); } });
    if (state.level === 'npa') {
      fetchJson('/api/areas/npa' + suffix).then(function (fc) {
        if (gen !== generation) { return; }
        notice('areas', null);
        drawAreas(fc, 'npa');
        legend.update();
        document.body.setAttribute('data-areas-loaded', String(gen));
      }).catch(function (err) { if (gen === generation) { notice('areas', 'Areas could not be loaded: ' + err.message, true); } });
    }
    if (on('hotspots')) {
      // Coloured by violent calls per 1,000 residents, the Gi* runs on that rate too (the CLI's --per-1000).
      var rate = effectiveMeasure() === 'violent_per_1000' ? (suffix ? '&' : '?') + 'measure=violent_per_1000' : '';
      fetchJson('/api/hotspots/npa' + suffix + rate).then(function (fc) {
        if (gen !== generation) { return; }
        notice('hotspots', null);
        drawHotspots(fc);
        document.body.setAttribute('data-hotspots-loaded', String(gen));
      }).catch(function (err) { if (gen === generation) { notice('hotspots', 'Hot spots could not be computed: ' + err.message, true); } });
    } else if (layers.hotspots) {
      map.removeLayer(layers.hotspots);
    }
    if (layers.areas && !on('areas')) { map.removeLayer(layers.areas); }
    if (layers.areas && on('areas') && !map.hasLayer(layers.areas)) { layers.areas.addTo(map); }
    if (layers.divisionShapes) { if (on('divisions')) { layers.divisionShapes.addTo(map); } else { map.removeLayer(layers.divisionShapes); } }
    updateHeat();
    loadCalls();
    loadHomicides();
    loadPanel();
  }

  // --- the side panel --------------------------------------------------------------------------
  function loadPanel() {
    var panel = document.getElementById('panel');
    if (!state.selected) { panel.hidden = true; map.invalidateSize(); return; }
    if (panel.hidden) { panel.hidden = false; map.invalidateSize(); }
    var body = document.getElementById('panel-body');
    body.setAttribute('aria-busy', 'true');
    var sel = state.selected;
    var qs = filterParams().toString();
    fetchJson('/api/panel/' + sel.level + '/' + encodeURIComponent(sel.id) + (qs ? '?' + qs : '')).then(function (data) {
      if (!state.selected || state.selected.id !== sel.id || state.selected.level !== sel.level) { return; }
      renderPanel(body, data);
      body.setAttribute('aria-busy', 'false');
    }).catch(function (err) {
      body.textContent = '';
      body.appendChild(el('p', {'class': 'notice error', text: 'This area could not be loaded: ' + err.message}));
      body.setAttribute('aria-busy', 'false');
    });
  }

  function renderPanel(body, d) {
    body.textContent = '';
    var a = d.area;
    body.setAttribute('data-level', d.level);
    body.setAttribute('data-id', String(a.id));
    body.appendChild(el('h2', {text: a.name}));
    body.appendChild(el('p', {'class': 'muted', text: d.period[0] + ' to ' + d.period[1] +
      (a.population ? ' · population ' + fmt(a.population) : '') + (a.division_id && d.level === 'npa' ? ' · division ' + a.division_id : '')}));

    var t = d.totals;
    body.appendChild(el('h3', {text: 'Totals'}));
    var totals = el('table', {'class': 'totals'}, [
      row(['Calls', fmt(t.calls)]),
      row(['Labelled violent', fmt(t.violent) + ' (' + pct(t.violent_share) + ')']),
      row(['Expected violent (sum of p)', fmt(t.expected_violent, 1)]),
      row(['Made of', t.origins ? (t.origins.real && t.origins.synthetic ? fmt(t.origins.real) + ' real + ' +
        fmt(t.origins.synthetic) + ' synthetic' : (t.origins.synthetic ? 'synthetic (generated) calls' : 'real calls')) : ''])
    ]);
    if (t.violent_per_1000 !== null && t.violent_per_1000 !== undefined) {
      totals.appendChild(row(['Violent per 1,000 residents', fmt(t.violent_per_1000, 2)]));
      totals.appendChild(row(['Calls per 1,000 residents', fmt(t.calls_per_1000, 1)]));
    }
    body.appendChild(totals);

    body.appendChild(el('h3', {text: 'Categories'}));
    var cats = el('table', {'class': 'categories'}, [row(['Category', 'Calls', 'Share', ''], 'th')]);
    var maxShare = Math.max.apply(null, d.categories.map(function (c) { return c.share; }).concat([0.0001]));
    d.categories.forEach(function (c) {
      var tr = row([c.category.replace(/_/g, ' '), fmt(c.calls), pct(c.share)]);
      tr.appendChild(el('td', {}, [el('span', {'class': 'bar', style: 'width:' + Math.round(60 * c.share / maxShare) + 'px'})]));
      cats.appendChild(tr);
    });
    body.appendChild(cats);

    body.appendChild(el('h3', {text: 'Calls per occurrence of each hour and weekday (local time)'}));
    body.appendChild(hoursTable(d.hour_weekday));
    if (d.hour_weekday.left_out_date_only) {
      body.appendChild(el('p', {'class': 'muted', text: fmt(d.hour_weekday.left_out_date_only) +
        ' calls known only by their date are left out (no time of day).'}));
    }

    if (d.response) { body.appendChild(responseSection(d.response)); }

    var cst = d.compstat;
    body.appendChild(el('h3', {text: 'CompStat (week ending ' + cst.report_end + ')'}));
    var cs = el('table', {'class': 'compstat'}, [row(['Window', 'Now', cst.compare === 'year' ? 'Year before' : 'Before',
      'Change', 'q'], 'th')]);
    cst.windows.forEach(function (w) {
      var change = w.pct_change === null ? 'n/a' : (w.pct_change > 0 ? '+' : '') + w.pct_change.toFixed(1) + '%';
      var tr = row([w.window, fmt(w.current), fmt(w.prior), change, w.q_value === null ? 'n/a' : w.q_value.toFixed(3)]);
      tr.title = w.current_period.join(' to ') + ' against ' + w.prior_period.join(' to ') + '; ' +
        (w.note || (w.significant ? 'significant change' : 'within noise') + ' (dispersion ' +
         (w.dispersion === null ? 'n/a' : w.dispersion.toFixed(2)) + ' from ' + w.history_pairs + ' earlier pairs)');
      if (w.significant) { tr.cells[3].className = w.pct_change > 0 ? 'up' : 'down'; tr.cells[3].textContent += ' *'; }
      cs.appendChild(tr);
    });
    body.appendChild(cs);
    body.appendChild(el('p', {'class': 'muted', text: '* significant at 5% after the FDR correction across areas ' +
      '(quasi-Poisson test, dispersion from the area\u2019s own history); n/a: the data do not cover both periods ' +
      'or the history is too short.'}));
    var divisionId = d.level === 'division' ? a.id : a.division_id;
    if (divisionId) {
      body.appendChild(el('p', {}, [el('a', {id: 'compstat-page', href: 'reports/compstat/' + encodeURIComponent(divisionId),
        target: '_blank', text: 'CompStat page of division ' + divisionId + ' (trend, 7x24, top changes)'})]));
    }

    body.appendChild(el('h3', {text: 'Outreach flags'}));
    if (d.outreach.flags.length) {
      var ul = el('ul', {'class': 'outreach'});
      d.outreach.flags.forEach(function (f) {
        ul.appendChild(el('li', {text: f.category.replace(/_/g, ' ') + ': ' + fmt(f.calls) + ' calls, ' + pct(f.share) +
          ' of the area\u2019s calls (' + f.ratio_to_city.toFixed(2) + '\u00d7 the city share)'}));
      });
      body.appendChild(ul);
    } else {
      body.appendChild(el('p', {'class': 'muted outreach-none', text: 'No category stands out against the city (outreach categories: mental health/welfare, domestic, disorder).'}));
    }

    body.appendChild(el('h3', {text: 'Resource allocation'}));
    var al = d.allocation;
    if (al) {
      var at = el('table', {'class': 'allocation'}, [row(['Shift', 'Officers', 'Workload h'], 'th')]);
      al.shifts.forEach(function (s) { at.appendChild(row([s.shift, fmt(s.officers), fmt(s.workload_hours, 1)])); });
      at.appendChild(row(['Division ' + al.division_id + ' total', fmt(al.officers) + ' of ' + fmt(al.officers_citywide), pct(al.workload_share) + ' of city']));
      body.appendChild(at);
      body.appendChild(el('p', {'class': 'reasoning', text: al.reasoning}));
    } else {
      body.appendChild(el('p', {'class': 'muted', text: 'Allocation is planned per division.'}));
    }

    var st = d.staffing;
    if (st) {
      body.appendChild(el('h3', {text: 'Staffing plan (queueing)'}));
      var tt = el('table', {'class': 'staffing'}, [row(['Shift', 'Calls/h', 'Units', 'Needed', 'P(wait)', 'P1 wait min', 'Busy', 'Officers'], 'th')]);
      st.shifts.forEach(function (s) {
        tt.appendChild(row([s.shift, fmt(s.calls_per_hour, 2), fmt(s.units), fmt(s.units_needed), pct(s.p_wait),
          s.p1_mean_wait_min === null ? 'no limit' : fmt(s.p1_mean_wait_min, 2), pct(s.utilisation), fmt(s.officers)]));
      });
      body.appendChild(tt);
      body.appendChild(el('p', {'class': 'muted', text: fmt(st.officers) + ' of ' + fmt(st.officers_citywide) +
        ' officers placed city-wide by marginal allocation; ' + st.service_times + '.'}));
      st.shifts.forEach(function (s) {
        if (s.warnings) { body.appendChild(el('p', {'class': 'warning', text: s.shift + ': ' + s.warnings})); }
        body.appendChild(el('p', {'class': 'needs-reasoning', text: s.shift + ': ' + s.needs_reasoning}));
      });
      body.appendChild(whatifControl(divisionId, st));
    }
  }

  // Response times of the selected area (geo/police.py): median and p90 minutes by priority.
  function responseSection(r) {
    var box = el('div', {id: 'response'});
    box.appendChild(el('h3', {text: 'Response time (received to on scene), minutes'}));
    if (!r.measured) {
      box.appendChild(el('p', {'class': 'muted', text: 'No call here carries usable CAD times.'}));
      return box;
    }
    var table = el('table', {'class': 'response'}, [row(['Priority', 'Median', 'p90', 'Dispatch', 'Travel', 'Calls'], 'th')]);
    r.by_priority.forEach(function (p) {
      var resp = p.response || {}, disp = p.dispatch || {}, trav = p.travel || {};
      var tr = row([p.priority, fmt(resp.median_min, 1), fmt(resp.p90_min, 1), fmt(disp.median_min, 1),
        fmt(trav.median_min, 1), fmt(resp.n)]);
      tr.setAttribute('data-priority', p.priority);
      table.appendChild(tr);
    });
    box.appendChild(table);
    var lo = r.left_out, left = lo.missing + lo.imprecise + lo.out_of_order;
    box.appendChild(el('p', {'class': 'muted', text: 'Dispatch and travel are medians of the two parts. ' +
      (left ? fmt(left) + ' calls left out: ' + fmt(lo.missing) + ' without the times, ' + fmt(lo.imprecise) +
        ' known only by date, ' + fmt(lo.out_of_order) + ' out of order.' : 'Every call carries usable times.')}));
    return box;
  }

  // What-if: move k officers from one of this division's shifts to another division-shift
  // (GET /api/staffing/whatif, the same computation as `hotspots whatif`).
  function whatifControl(divisionId, st) {
    var shifts = st.shifts.map(function (s) { return s.shift; });
    function select(id, values, chosen) {
      var sel = el('select', {id: id});
      values.forEach(function (v) { sel.appendChild(el('option', {value: v.id, text: v.text})); });
      sel.value = chosen;
      return sel;
    }
    var shiftOptions = shifts.map(function (s) { return {id: s, text: s}; });
    var k = el('input', {id: 'whatif-k', type: 'number', min: '1', value: '2', style: 'width:4em'});
    var from = select('whatif-from-shift', shiftOptions, shifts[0]);
    var to = select('whatif-to-division', config.divisions.map(function (dv) { return {id: dv.id, text: dv.short_name + ' (' + dv.id + ')'}; }),
      divisionId);
    var toShift = select('whatif-to-shift', shiftOptions, shifts[shifts.length - 1]);
    var button = el('button', {id: 'whatif-run', type: 'button', text: 'Try'});
    var out = el('div', {id: 'whatif-result', 'aria-live': 'polite'});
    var box = el('div', {id: 'whatif'}, [el('h3', {text: 'What if'}), el('p', {}, [
      'Move ', k, ' officers from ' + divisionId + ' ', from, ' to ', to, ' ', toShift, ' ', button]), out]);
    button.addEventListener('click', function () {
      var p = filterParams();
      p.set('officers', String(st.officers_citywide));
      p.set('move', k.value + ':' + divisionId + '/' + from.value + '->' + to.value + '/' + toShift.value);
      out.textContent = 'computing\u2026';
      out.setAttribute('aria-busy', 'true');
      fetchJson('/api/staffing/whatif?' + p.toString()).then(function (w) {
        out.textContent = '';
        var s = w.summary;
        var t = el('table', {'class': 'whatif'}, [row(['', 'Before', 'After'], 'th')]);
        [['P1 mean wait, min (queueing)', 'p1_mean_wait_min', 2], ['Mean wait, min (queueing)', 'mean_wait_min', 2],
         ['P1 response median, min (sim)', 'sim_p1_response_median_min', 2],
         ['P1 response p90, min (sim)', 'sim_p1_response_p90_min', 2], ['Share waiting (sim)', 'sim_share_waiting', null]
        ].forEach(function (m) {
          if (!((m[1] + '_before') in s)) { return; }
          var b = s[m[1] + '_before'], a = s[m[1] + '_after'];
          var tr = row([m[0], m[2] === null ? pct(b) : fmt(b, m[2]), m[2] === null ? pct(a) : fmt(a, m[2])]);
          tr.setAttribute('data-measure', m[1]);
          t.appendChild(tr);
        });
        out.appendChild(t);
        (w.notes || []).forEach(function (n) { out.appendChild(el('p', {'class': 'muted', text: n})); });
        out.setAttribute('aria-busy', 'false');
      }).catch(function (err) {
        out.textContent = '';
        out.appendChild(el('p', {'class': 'notice error', text: 'What-if failed: ' + err.message}));
        out.setAttribute('aria-busy', 'false');
      });
    });
    return box;
  }

  function row(cells, tag) {
    return el('tr', {}, cells.map(function (c) { return el(tag || 'td', {text: String(c)}); }));
  }

  function hoursTable(hw) {
    // Shaded by calls per occurrence (a period holds some weekdays more often than others), in the
    // server's colours: the same scale as the CompStat page's heat matrix (geo/charts.py).
    var table = el('table', {'class': 'hours'});
    var head = el('tr', {}, [el('th', {text: ''})]);
    hw.hours.forEach(function (h) { head.appendChild(el('th', {text: h % 3 === 0 ? String(h) : ''})); });
    table.appendChild(head);
    hw.counts.forEach(function (counts, d) {
      var tr = el('tr', {}, [el('th', {text: hw.weekdays[d]})]);
      counts.forEach(function (n, h) {
        var mean = hw.mean[d][h], times = hw.occurrences[d][h];
        tr.appendChild(el('td', {title: hw.weekdays[d] + ' ' + h + ':00 \u2013 ' + (mean === null ? 'n/a' : fmt(mean, 2)) +
          ' calls per occurrence (' + fmt(n) + ' calls in ' + fmt(times) + ' occurrences)',
          'data-count': String(n), 'data-mean': mean === null ? '' : String(mean),
          style: 'background:' + (hw.colours[d][h] || '#ddd')}));
      });
      table.appendChild(tr);
    });
    return table;
  }

  // --- start -----------------------------------------------------------------------------------
  document.getElementById('panel-close').addEventListener('click', function () {
    state.selected = null;
    document.getElementById('panel').hidden = true;
    map.invalidateSize();
    highlightSelected();
    writeUrl();
  });

  fetchJson('/api/config').then(function (c) {
    config = c;
    // Calls of both origins: show the real ones unless the URL chose; never add them up silently.
    var oc = c.origins && c.origins.calls;
    if (oc && oc.real && oc.synthetic && !state.filters.origin) { state.filters.origin = 'real'; }
    buildMap();
    // Layers kept in their own files (emerging.js) add themselves to the map here.
    document.dispatchEvent(new CustomEvent('hotspots:map', {detail: {map: map, config: c}}));
    buildControls();
    refresh();
  }).catch(function (err) {
    notice('config', 'The map could not start: ' + err.message, true);
  });
}());
