from services.mapping.entrypoint import main

main()
