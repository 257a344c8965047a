package warehouse

// JSONRows is jsonRows for the package's external tests.
var JSONRows = jsonRows
