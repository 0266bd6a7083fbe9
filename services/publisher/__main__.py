from services.publisher.entrypoint import main

main()
