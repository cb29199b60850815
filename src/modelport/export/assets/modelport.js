/*
 * modelport browser runtime: predict(rows) with onnxruntime-web (WebAssembly), offline.
 *
 * Load after ort/ort.wasm.min.js, ort/ort-wasm-glue.js, ort/ort-wasm-binary.js and model.js
 * (classic scripts, so the page also works from file://). Then:
 *
 *   const answer = await modelport.predict([{"mean radius": 13.4, ...}, ...]);
 *   // {model, version, predictions: [{prediction_id, prediction, probabilities, predicted_at}]}
 *   const one = await modelport.predict({"mean radius": 13.4, ...});
 *   // {prediction_id, prediction, probabilities, model, version, predicted_at}
 *
 * The same structure as `modelport serve`'s POST /predict/{model}. Rows are checked against
 * the model's signature first; a bad row throws a ModelportInputError naming the row and field.
 */
(function (root) {
  "use strict";

  var MODEL = root.MODELPORT_MODEL;
  if (!MODEL) { throw new Error("modelport.js: load model.js first"); }
  var META = MODEL.meta;
  var SIGNATURE = META.signature;

  function ModelportInputError(message, field) {
    var error = new Error(message);
    error.name = "ModelportInputError";
    error.field = field || null;
    Object.setPrototypeOf(error, ModelportInputError.prototype);
    return error;
  }
  ModelportInputError.prototype = Object.create(Error.prototype);
  ModelportInputError.prototype.constructor = ModelportInputError;

  function decodeBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }

  var sessionPromise = null;

  /** Start the runtime and load the model (once); resolves to the ONNX Runtime session. */
  function ready() {
    if (sessionPromise) { return sessionPromise; }
    var ort = root.ort;
    if (!ort) { throw new Error("modelport.js: load ort/ort.wasm.min.js first"); }
    // Everything comes from this folder: the glue module as a blob URL, the binary as bytes
    // (fetch and module imports of file:// URLs are refused by browsers).
    var glue = new Blob([root.MODELPORT_ORT_GLUE], { type: "text/javascript" });
    ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(glue) };
    ort.env.wasm.wasmBinary = decodeBase64(root.MODELPORT_ORT_WASM);
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    ort.env.logLevel = "error";
    sessionPromise = ort.InferenceSession.create(decodeBase64(MODEL.onnx), {
      executionProviders: ["wasm"], graphOptimizationLevel: "all"
    });
    return sessionPromise;
  }

  // ------------------------------------------------------------------ input checks
  var INTEGER_RANGES = {
    int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647],
    int64: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], uint8: [0, 255],
    uint16: [0, 65535], uint32: [0, 4294967295], uint64: [0, Number.MAX_SAFE_INTEGER]
  };

  function describe(value) {
    if (value === null) { return "null"; }
    if (Array.isArray(value)) { return "a list"; }
    if (typeof value === "string") { return "a string (" + JSON.stringify(value.slice(0, 40)) + ")"; }
    return typeof value === "object" ? "an object" : typeof value + " (" + String(value) + ")";
  }

  function checkScalar(spec, value, where) {
    var dtype = spec.dtype;
    if (value === null || value === undefined || (typeof value === "number" && isNaN(value))) {
      if (spec.nullable && dtype.indexOf("float") === 0) { return NaN; }
      throw ModelportInputError(where + ": missing value where " + dtype + " is required", spec.name);
    }
    if (dtype === "string") {
      if (typeof value !== "string") {
        throw ModelportInputError(where + ": expected a string, got " + describe(value), spec.name);
      }
      return value;
    }
    if (dtype === "bool") {
      if (typeof value !== "boolean") {
        throw ModelportInputError(where + ": expected true or false, got " + describe(value), spec.name);
      }
      return value;
    }
    if (typeof value !== "number" || !isFinite(value)) {
      throw ModelportInputError(where + ": expected " + dtype + ", got " + describe(value), spec.name);
    }
    if (dtype.indexOf("float") !== 0) {
      if (!Number.isInteger(value)) {
        throw ModelportInputError(where + ": expected " + dtype + ", got a fractional number (" + value + ")", spec.name);
      }
      var range = INTEGER_RANGES[dtype];
      if (range && (value < range[0] || value > range[1])) {
        throw ModelportInputError(where + ": " + value + " is out of range for " + dtype, spec.name);
      }
    }
    return value;
  }

  function flatten(spec, value, where) {
    var out = [];
    var size = spec.shape.reduce(function (a, b) { return a * b; }, 1);
    (function walk(v, depth) {
      if (Array.isArray(v)) {
        if (depth >= spec.shape.length || v.length !== spec.shape[depth]) {
          throw ModelportInputError(where + ": expected shape [" + spec.shape.join(", ") + "]", spec.name);
        }
        v.forEach(function (item) { walk(item, depth + 1); });
      } else {
        if (depth !== spec.shape.length) {
          throw ModelportInputError(where + ": expected shape [" + spec.shape.join(", ") + "]", spec.name);
        }
        out.push(checkScalar(spec, v, where));
      }
    })(value, 0);
    if (out.length !== size) {
      throw ModelportInputError(where + ": expected " + size + " values", spec.name);
    }
    return out;
  }

  /** Rows checked against the signature: {columns: {name: [values per row]}, n}. */
  function checkRows(rows) {
    if (!Array.isArray(rows) || rows.length === 0) {
      throw ModelportInputError("no rows given; send at least one record");
    }
    var names = SIGNATURE.inputs.map(function (s) { return s.name; });
    var columns = {};
    SIGNATURE.inputs.forEach(function (spec) { columns[spec.name] = []; });
    rows.forEach(function (row, i) {
      if (row === null || typeof row !== "object" || Array.isArray(row)) {
        throw ModelportInputError("row " + i + ": expected an object with fields " + JSON.stringify(names) + ", got " + describe(row));
      }
      SIGNATURE.inputs.forEach(function (spec) {
        if (!Object.prototype.hasOwnProperty.call(row, spec.name)) {
          throw ModelportInputError("row " + i + ": missing column '" + spec.name + "'", spec.name);
        }
        var where = "row " + i + ", column '" + spec.name + "'";
        var value = row[spec.name];
        columns[spec.name].push(spec.shape && spec.shape.length ? flatten(spec, value, where)
                                                                 : checkScalar(spec, value, where));
      });
      Object.keys(row).forEach(function (key) {
        if (names.indexOf(key) < 0) {
          throw ModelportInputError("unexpected column '" + key + "'; the model takes " + JSON.stringify(names), key);
        }
      });
    });
    return { columns: columns, n: rows.length };
  }

  // ------------------------------------------------------------------ tensors
  var ARRAYS = {
    float32: Float32Array, float64: Float64Array, int32: Int32Array, int16: Int16Array,
    int8: Int8Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array
  };
  var ORT_TYPES = { float64: "float64", float32: "float32", bool: "bool", string: "string" };

  function tensorOf(feed, columns, n) {
    var ort = root.ort;
    var values = [];
    for (var r = 0; r < n; r++) {
      feed.columns.forEach(function (name) {
        var cell = columns[name][r];
        if (Array.isArray(cell)) { Array.prototype.push.apply(values, cell); } else { values.push(cell); }
      });
    }
    var width = values.length / n;
    var dims = feed.rank === 1 ? [n] : [n].concat(feed.rank === 2 ? [width] : feed.shape);
    var type = feed.type;
    var data;
    if (type === "int64" || type === "uint64") {
      data = (type === "int64" ? BigInt64Array : BigUint64Array).from(values.map(function (v) { return BigInt(v); }));
    } else if (type === "bool") {
      data = Uint8Array.from(values.map(function (v) { return v ? 1 : 0; }));
    } else if (type === "string") {
      data = values;
    } else {
      data = ARRAYS[type].from(values);
    }
    return new ort.Tensor(ORT_TYPES[type] || type, data, dims);
  }

  function plain(value) {
    return typeof value === "bigint" ? Number(value) : value;
  }

  function hexId() {
    var bytes = new Uint8Array(16);
    root.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }

  function nowMicros() {
    return new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
  }

  function records(outputs, session, n) {
    var names = session.outputNames;
    var out = [];
    var classes = SIGNATURE.classes;
    var boolClasses = classes && classes.every(function (c) { return typeof c === "boolean"; });
    if (META.classifier) {
      var proba = outputs[names[1]].data;
      var labels = outputs[names[0]].data;
      var width = proba.length / n;
      for (var r = 0; r < n; r++) {
        var row = { prediction: null, probabilities: {} };
        var best = 0;
        for (var c = 0; c < width; c++) {
          var p = Number(proba[r * width + c]);
          row.probabilities[String(classes ? classes[c] : c)] = p;
          if (p > Number(proba[r * width + best])) { best = c; }
        }
        var label = META.labels_from_proba ? classes[best] : plain(labels[r]);
        if (boolClasses && typeof label === "number") { label = label !== 0; }
        row.prediction = label;
        out.push(row);
      }
      return out;
    }
    if (SIGNATURE.task === "regression") {
      var values = outputs[names[0]].data;
      for (var i = 0; i < n; i++) { out.push({ prediction: Number(values[i]) }); }
      return out;
    }
    for (var k = 0; k < n; k++) {
      var rec = {};
      names.forEach(function (name) {
        var t = outputs[name];
        var size = t.data.length / n;
        var slice = Array.prototype.slice.call(t.data, k * size, (k + 1) * size).map(plain);
        rec[name] = size === 1 ? slice[0] : slice;
      });
      out.push(rec);
    }
    return out;
  }

  /**
   * Predict one record (an object) or a list of records; resolves to the REST API's answer.
   * Throws ModelportInputError for rows that do not fit the signature.
   */
  async function predict(rows) {
    var single = rows !== null && typeof rows === "object" && !Array.isArray(rows);
    var checked = checkRows(single ? [rows] : rows);
    var session = await ready();
    var feeds = {};
    META.feeds.forEach(function (feed) { feeds[feed.name] = tensorOf(feed, checked.columns, checked.n); });
    var outputs = await session.run(feeds);
    var recs = records(outputs, session, checked.n);
    var id = hexId();
    var at = nowMicros();
    recs = recs.map(function (rec, i) {
      var ordered = { prediction_id: single ? id : id + "-" + i };
      Object.keys(rec).forEach(function (key) { ordered[key] = rec[key]; });
      ordered.predicted_at = at;
      return ordered;
    });
    if (single) {
      var one = {};
      Object.keys(recs[0]).forEach(function (key) {
        if (key !== "predicted_at") { one[key] = recs[0][key]; }
      });
      one.model = META.model;
      one.version = META.version;
      one.predicted_at = at;
      return one;
    }
    return { model: META.model, version: META.version, predictions: recs };
  }

  root.modelport = {
    predict: predict, ready: ready, signature: SIGNATURE, info: META,
    ModelportInputError: ModelportInputError
  };
})(typeof globalThis !== "undefined" ? globalThis : window);
