from wsapp.cli import main

main()
