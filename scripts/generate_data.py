"""Generated test data into the coldcopy_db connection's database (`make data SCALE=N`); see
:mod:`coldcopy.testing.generate_data`."""

from coldcopy.testing.generate_data import main

if __name__ == "__main__":
    main()
