# Phone number normalisation (numbers.pyx), for the screening engine.

cpdef bytes normalise_address(bytes addr, int ton, int npi, bytes country_code)
